//! Pooled upstream HTTP/1.1 connections, one pool per connection-serving thread.
//!
//! Each pooled connection is a `hyper::client::conn::http1` connection whose task runs on the
//! thread that opened it; the pool keeps the sending half. Only connections that carried a
//! bodiless request come here ([`crate::upstream`] gives requests with a body or an upgrade a
//! dedicated connection); one goes back to the pool when its response body has been read to
//! its end (a response abandoned half way closes its connection instead), and is reused
//! most-recently-used first, so a busy desktop keeps a few warm connections and the rest age
//! out. A checkout takes only a connection that can take a request at once.
//!
//! Bounds: at most `max_idle_per_host` idle connections per upstream address; an idle
//! connection is closed after `idle_timeout` (by a sweeper task that runs only while the pool
//! holds something). A request that finds its pooled connection closed by the upstream is
//! retried on another connection, which is safe because hyper hands back a request it has not
//! started to write.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

use crate::deadline::WriteDeadline;
use crate::respond::Body;

/// Largest read (and write) buffer of an upstream connection: response bodies are read in
/// chunks of at most this size (hyper's default is about 400 KiB; see the memory budget).
const UPSTREAM_BUFFER: usize = 16 * 1024;

/// Where an upstream request goes: a resolved address (names are resolved before, by the one
/// resolver of [`crate::dns`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dest(pub SocketAddr);

impl Dest {
    /// Opens a TCP connection (no Nagle) within `timeout`.
    pub async fn connect(&self, timeout: Duration) -> Result<TcpStream, ConnectError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(self.0))
            .await
            .map_err(|_| ConnectError::TimedOut)?
            .map_err(ConnectError::Io)?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A TCP connection to the upstream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Refused, unreachable, or the name did not resolve.
    #[error("connect: {0}")]
    Io(std::io::Error),
    /// No answer within the connect timeout.
    #[error("connect timed out")]
    TimedOut,
    /// The HTTP/1 connection could not be set up.
    #[error("connection setup")]
    Handshake(#[source] hyper::Error),
}

/// The pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Longest wait for a new TCP connection.
    pub connect_timeout: Duration,
    /// How long an unused connection is kept.
    pub idle_timeout: Duration,
    /// Most idle connections kept per upstream address.
    pub max_idle_per_host: usize,
}

/// One thread's upstream connections. Only that thread touches it on the request path; the
/// lock is uncontended and exists because the gateway (and so the pool) is shared.
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Idle connections per upstream, oldest first.
    idle: HashMap<Dest, Vec<Idle>>,
    /// Whether a sweeper task is running.
    sweeping: bool,
}

#[derive(Debug)]
struct Idle {
    sender: SendRequest<Body>,
    since: Instant,
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Arc<Self> {
        Arc::new(Pool {
            config,
            state: Mutex::new(State::default()),
        })
    }

    /// Opens a new connection to `dest` and starts its task on this thread. Writes that the
    /// upstream leaves waiting longer than `send_timeout` fail (nginx `proxy_send_timeout`);
    /// `upgrades` keeps the connection usable after a `101`.
    pub(crate) async fn open(
        &self,
        dest: &Dest,
        send_timeout: Duration,
        upgrades: bool,
    ) -> Result<SendRequest<Body>, ConnectError> {
        let stream = dest.connect(self.config.connect_timeout).await?;
        let io = TokioIo::new(WriteDeadline::new(stream, send_timeout));
        // Heads and bodies are copied into one buffer and written with one `write` rather
        // than queued for `writev`, here and on the client side (`connection::Protocols`):
        // 1.04–1.05× the cached GETs per CPU-second, the 1 GiB download unchanged (1.01×);
        // either side alone gains nothing (benches/results/ab-2026-12-02-writev.md).
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(UPSTREAM_BUFFER)
            .writev(false)
            .handshake(io)
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            let ended = if upgrades {
                conn.with_upgrades().await
            } else {
                conn.await
            };
            if let Err(e) = ended {
                debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// The most recently used connection to `dest` that can take a request right now;
    /// closed ones are dropped on the way, busy ones stay (a checkout never waits on one).
    /// (Age is the sweeper's business: a connection is at most half a timeout past it, and a
    /// stale one the upstream has closed meanwhile is retried by the executor.)
    pub(crate) fn checkout(&self, dest: &Dest) -> Option<SendRequest<Body>> {
        let mut state = self.lock();
        let idle = state.idle.get_mut(dest)?;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut found = None;
        let mut index = idle.len();
        while index > 0 {
            index -= 1;
            match idle[index].sender.poll_ready(&mut cx) {
                Poll::Ready(Ok(())) => {
                    found = Some(idle.remove(index).sender);
                    break;
                }
                Poll::Ready(Err(_)) => {
                    idle.remove(index);
                }
                Poll::Pending => {}
            }
        }
        // An emptied list stays for the next checkin (no map churn per request); the sweeper
        // drops empty ones.
        found
    }

    /// What a response body gives back to this pool when it was read to the end.
    pub(crate) fn back(self: &Arc<Self>, dest: Dest, sender: SendRequest<Body>) -> Back {
        Back {
            pool: self.clone(),
            dest,
            sender,
        }
    }

    /// Keeps `sender` for the next request to `dest`, within the bounds.
    fn checkin(self: &Arc<Self>, dest: Dest, sender: SendRequest<Body>) {
        if sender.is_closed() || self.config.max_idle_per_host == 0 {
            return;
        }
        let mut state = self.lock();
        let idle = state.idle.entry(dest).or_default();
        if idle.len() >= self.config.max_idle_per_host {
            // The oldest goes; dropping its sender closes the connection.
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
        if !state.sweeping {
            state.sweeping = true;
            drop(state);
            self.start_sweeper();
        }
    }

    /// Closes connections idle past the timeout, every `idle_timeout / 2`, until the pool is
    /// empty. Runs on the pool's thread (checkin happens there).
    fn start_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.lock().sweeping = false;
            return;
        };
        let pool = Arc::downgrade(self);
        let period = (self.config.idle_timeout / 2).max(Duration::from_millis(10));
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(pool) = pool.upgrade() else { return };
                let mut state = pool.lock();
                let now = Instant::now();
                let timeout = pool.config.idle_timeout;
                state.idle.retain(|_, idle| {
                    idle.retain(|e| !e.sender.is_closed() && now.duration_since(e.since) < timeout);
                    !idle.is_empty()
                });
                if state.idle.is_empty() {
                    state.sweeping = false;
                    return;
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a response body returns to the pool when it ends.
#[derive(Debug)]
pub(crate) struct Back {
    pool: Arc<Pool>,
    dest: Dest,
    sender: SendRequest<Body>,
}

/// An upstream response body that hands its connection back to the pool once read to the end.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    back: Option<Back>,
}

impl PooledBody {
    pub(crate) fn new(inner: Incoming, back: Back) -> Self {
        PooledBody {
            inner,
            back: Some(back),
        }
    }

    fn give_back(&mut self) {
        if let Some(Back { pool, dest, sender }) = self.back.take() {
            pool.checkin(dest, sender);
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body nobody read (an empty one, or a HEAD answer) still frees its connection.
        if hyper::body::Body::is_end_stream(&self.inner) {
            self.give_back();
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

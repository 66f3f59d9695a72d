//! One client connection's life: which protocol it speaks, the deadline of every phase in
//! which it waits for the client, and what it holds while it lives.
//!
//! Phases and their deadlines (README, "Timeouts"):
//! - from accept (TLS handshake included) to the first complete request head:
//!   `header_read_timeout`;
//! - between requests with none in flight: `keepalive_timeout` until the next head's first
//!   byte (HTTP/1), then `header_read_timeout` for the rest of that head; an HTTP/2
//!   connection without an open stream gets a GOAWAY after `keepalive_timeout`;
//! - a write the client does not take: `send_timeout` (responses and tunnels alike);
//! - HTTP/2 PINGs every `h2_keepalive_interval`, unanswered for `h2_keepalive_timeout`: closed.
//!
//! Reading a request body is bounded where the body is read (`client_body_timeout`, in
//! [`crate::body`]); the upstream's phases in [`crate::upstream`].
//!
//! What a connection holds, it holds in its I/O object ([`ClientIo`]): its connection permit
//! and its place in the per-address count. Both go back when the socket closes, also when the
//! socket has become a WebSocket tunnel, so tunnels count against `max_connections` too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;
use tracing::{Instrument as _, debug, debug_span};

use crate::config::Limits;
use crate::deadline::WriteDeadline;
use crate::metrics::Metrics;
use crate::proxy::{Gateway, Peer};
use crate::reclaim::{ClientWait, Reclaim, Registered, Waited, Waiting};
use crate::respond::{Body, BoxError};

/// How long a connection told to go away (idle HTTP/2, shutdown) may take to do so before
/// it is closed.
const GOAWAY_GRACE: Duration = Duration::from_secs(5);
/// Largest send buffer per HTTP/2 stream (hyper's default is 400 KiB); see the memory budget.
pub(crate) const H2_SEND_BUFFER: usize = 16 * 1024;
/// HTTP/2 receive windows: per stream and per connection (hyper's default: 1 MiB each).
pub(crate) const H2_STREAM_WINDOW: u32 = 256 * 1024;
pub(crate) const H2_CONNECTION_WINDOW: u32 = 512 * 1024;
/// "No time recorded" in [`Activity`]'s millisecond fields.
const NEVER: u64 = u64::MAX;

/// The protocol engines, configured once from `[limits]` and shared by every connection.
#[derive(Debug)]
pub(crate) struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    /// Present when plaintext h2c is enabled: sniffs the preface, then h1 or h2.
    auto: Option<auto::Builder<TokioExecutor>>,
    limits: Limits,
}

/// The same settings on hyper's HTTP/1 and HTTP/2 builders and on hyper-util's `auto` halves
/// (types of their own with the same methods).
macro_rules! h1_settings {
    ($builder:expr, $limits:expr) => {
        // Head deadlines are the watchdog's ([`drive`]): hyper's own timer starts only when a
        // head begins, and would also cut keep-alive idleness at the head timeout.
        $builder
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size($limits.max_header_bytes)
            // With the pool's connections set the same way: see `pool::Pool::open`.
            .writev(false)
    };
}

macro_rules! h2_settings {
    ($builder:expr, $limits:expr) => {
        $builder
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from($limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams($limits.h2_max_concurrent_streams)
            .max_pending_accept_reset_streams($limits.h2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams($limits.h2_max_local_error_reset_streams)
            .keep_alive_interval($limits.h2_keepalive_interval)
            .keep_alive_timeout($limits.h2_keepalive_timeout)
            .max_send_buf_size(H2_SEND_BUFFER)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
    };
}

impl Protocols {
    pub(crate) fn new(limits: &Limits) -> Self {
        let mut h1 = http1::Builder::new();
        h1_settings!(h1, limits);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2_settings!(h2, limits);
        let auto = limits.h2c.then(|| {
            let mut auto = auto::Builder::new(TokioExecutor::new());
            h1_settings!(auto.http1(), limits);
            h2_settings!(auto.http2(), limits);
            auto
        });
        Protocols {
            h1,
            h2,
            auto,
            limits: limits.clone(),
        }
    }
}

/// Which engine serves a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    /// h2c enabled: decided by the first bytes.
    Sniffed,
}

/// Per-client-address connection counts, for `max_connections_per_ip`.
#[derive(Debug, Default)]
pub(crate) struct PerAddress {
    cap: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(PerAddress {
            cap,
            counts: Mutex::default(),
        })
    }

    /// A place for one more connection from `ip`, or `None` when it holds its share. With no
    /// cap, always a place (and no bookkeeping).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        if self.cap == 0 {
            return Some(AddressSlot(None));
        }
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(ip).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot(Some((self.clone(), ip))))
    }
}

/// One connection's place in [`PerAddress`]; freed on drop.
#[derive(Debug)]
pub(crate) struct AddressSlot(Option<(Arc<PerAddress>, IpAddr)>);

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some((table, ip)) = self.0.take() {
            let mut counts = table.counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

/// What a connection holds for as long as its socket is open.
#[derive(Debug)]
pub(crate) struct Held {
    _permit: OwnedSemaphorePermit,
    _slot: AddressSlot,
}

impl Held {
    pub(crate) fn new(permit: OwnedSemaphorePermit, slot: AddressSlot) -> Self {
        Held {
            _permit: permit,
            _slot: slot,
        }
    }
}

/// What a connection's watchdog knows of it, updated by its I/O and its requests. Times are
/// milliseconds since `opened`.
#[derive(Debug)]
pub(crate) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    /// When the last request finished.
    idle_since: AtomicU64,
    /// When the first byte of the next head arrived (HTTP/1, nothing in flight), or NEVER.
    head_started: AtomicU64,
    /// Whether the connection speaks HTTP/2 (by ALPN, or a sniffed one's first request came
    /// as HTTP/2): its bytes between requests are frames (PING answers, ...), not the start
    /// of a head.
    h2: AtomicBool,
    /// Whether the request in flight waits on its client: what [`crate::reclaim`] looks at.
    client_wait: Arc<ClientWait>,
}

impl Activity {
    fn new() -> Arc<Self> {
        let opened = Instant::now();
        Arc::new(Activity {
            opened,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NEVER),
            h2: AtomicBool::new(false),
            client_wait: ClientWait::new(opened),
        })
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened + Duration::from_millis(millis)
    }

    /// Bytes arrived from the client.
    fn on_read(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0
            && self.head_started.load(Ordering::Relaxed) == NEVER
        {
            self.head_started.store(self.millis(), Ordering::Relaxed);
        }
    }

    /// A request head is complete; the returned guard ends the request when dropped.
    fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        if version == http::Version::HTTP_2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.head_started.store(NEVER, Ordering::Relaxed);
        self.client_wait.moved();
        InFlight(self.clone())
    }

    /// When the connection has waited too long for its client, given what it waits for now;
    /// `None` while a request is in flight (its own phases have deadlines).
    /// Also says which phase it ends, as `gateway_client_closed_total` names it.
    fn deadline(&self, protocol: Protocol, limits: &Limits) -> Option<(Instant, &'static str)> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some((self.opened + limits.header_read_timeout, "header_timeout"));
        }
        let head = self.head_started.load(Ordering::Relaxed);
        let h2 = protocol == Protocol::Http2 || self.h2.load(Ordering::Relaxed);
        if !h2 && head != NEVER {
            return Some((self.at(head) + limits.header_read_timeout, "header_timeout"));
        }
        let idle = self.at(self.idle_since.load(Ordering::Relaxed)) + limits.keepalive_timeout;
        Some((idle, "keepalive_timeout"))
    }
}

impl Waiting for Activity {
    /// How long this connection has kept the gateway waiting for its client with nothing
    /// else in progress, or `None` when it may not be told to go (see [`crate::reclaim`]).
    fn waited(&self) -> Option<Waited> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            if self.h2.load(Ordering::Relaxed) {
                return None;
            }
            return self.client_wait.waited().map(Waited::MidRequest);
        }
        let since = if self.requests.load(Ordering::Relaxed) == 0 {
            0
        } else {
            self.idle_since.load(Ordering::Relaxed)
        };
        Some(Waited::Idle(Duration::from_millis(
            self.millis().saturating_sub(since),
        )))
    }
}

/// A request in flight on its connection; ends with the response body (or its drop).
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .idle_since
            .store(activity.millis(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it ends.
#[derive(Debug)]
pub(crate) struct TrackedBody {
    inner: Body,
    request: Option<InFlight>,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.request = None;
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

/// The client socket as the protocol engines see it: reads are noted for the watchdog, a
/// write the client does not take within `send_timeout` fails, and what the connection holds
/// is released when the socket goes (after a tunnel, too).
#[derive(Debug)]
pub(crate) struct ClientIo<I> {
    io: WriteDeadline<I>,
    activity: Arc<Activity>,
    /// `gateway_client_closed_total{reason="send_timeout"}`, taken when it is counted (once).
    send_timeouts: Option<IntCounter>,
    _held: Held,
}

impl<I: AsyncRead + Unpin> AsyncRead for ClientIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(this.io.inner_mut()).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.on_read();
        }
        polled
    }
}

impl<I> ClientIo<I> {
    /// Notes whether a write was taken (bytes went out) or left the connection waiting on
    /// its client. A flush with nothing to send says nothing about the client.
    fn noted<T>(
        &mut self,
        polled: Poll<std::io::Result<T>>,
        wrote: impl Fn(&T) -> bool,
    ) -> Poll<std::io::Result<T>> {
        match &polled {
            Poll::Pending => self.activity.client_wait.waits(),
            Poll::Ready(Ok(done)) if wrote(done) => self.activity.client_wait.moved(),
            Poll::Ready(Err(_)) if self.io.expired() => {
                if let Some(counter) = self.send_timeouts.take() {
                    debug!("client did not read within the send timeout; closing");
                    counter.inc();
                }
            }
            Poll::Ready(_) => {}
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ClientIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.noted(polled, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.noted(polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.noted(polled, |()| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// What every connection task is given besides its socket.
#[derive(Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) gateway: Arc<Gateway>,
    pub(crate) protocols: Arc<Protocols>,
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    pub(crate) worker: usize,
    /// Turns true at shutdown: connections finish what is in flight and close.
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Dropped when the connection's HTTP life ends (the server waits for all of them).
    pub(crate) _alive: mpsc::Sender<()>,
    /// The registry that tells connections to go when the gateway is out of them
    /// ([`crate::reclaim`]).
    pub(crate) reclaim: Arc<Reclaim>,
}

/// Serves one accepted socket to its end: TLS handshake when configured, then HTTP/1 or
/// HTTP/2, each phase under its deadline.
pub(crate) async fn serve(
    context: ConnectionContext,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    held: Held,
) {
    let limits = context.protocols.limits.clone();
    let activity = Activity::new();
    let io = ClientIo {
        io: WriteDeadline::new(stream, limits.send_timeout),
        activity: activity.clone(),
        send_timeouts: Some(context.gateway.metrics().send_timeouts.clone()),
        _held: held,
    };
    let registered = context.reclaim.register(activity.clone());
    let span = debug_span!("conn", %peer);
    async move {
        match context.tls.clone() {
            None => {
                let protocol = if context.protocols.auto.is_some() {
                    Protocol::Sniffed
                } else {
                    Protocol::Http1
                };
                serve_http(&context, io, protocol, peer, &activity, &registered).await;
            }
            // Boxed: TLS's state stays out of plaintext connections' futures.
            Some(acceptor) => Box::pin(async {
                // The handshake counts against the first head's deadline.
                let deadline = activity.opened + limits.header_read_timeout;
                let handshake = tokio::select! {
                    done = tokio::time::timeout_at(deadline, acceptor.accept(io)) => done,
                    () = registered.told_to_go() => {
                        debug!("out of connections: a TLS handshake that kept the gateway waiting longest; closing");
                        context.gateway.metrics().client_closed("reclaimed");
                        return;
                    }
                };
                match handshake {
                    Ok(Ok(tls)) => {
                        let protocol = match tls.get_ref().1.alpn_protocol() {
                            Some(b"h2") => {
                                activity.h2.store(true, Ordering::Relaxed);
                                Protocol::Http2
                            }
                            _ => Protocol::Http1,
                        };
                        serve_http(&context, tls, protocol, peer, &activity, &registered).await;
                    }
                    Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                    Err(_) => debug!("TLS handshake timed out"),
                }
            })
            .await,
        }
    }
    .instrument(span)
    .await;
}

async fn serve_http<I>(
    context: &ConnectionContext,
    io: I,
    protocol: Protocol,
    peer: SocketAddr,
    activity: &Arc<Activity>,
    registered: &Registered,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let gateway = context.gateway.clone();
    let worker = context.worker;
    let peer = Arc::new(Peer::new(peer).waited_on_by(activity.client_wait.clone()));
    let tracked = activity.clone();
    let service = service_fn(move |req| {
        let request = tracked.begin(req.version());
        let gateway = gateway.clone();
        let peer = peer.clone();
        // Debug level: with the default `info` filter the span costs nothing per request.
        let span = debug_span!(
            "request",
            method = %req.method(),
            path = %crate::telemetry::redact_path(req.uri().path())
        );
        async move {
            let res = gateway.handle(req, &peer, worker).await;
            let (parts, inner) = res.into_parts();
            let body = TrackedBody {
                inner,
                request: Some(request),
            };
            Ok::<_, Infallible>(hyper::Response::from_parts(parts, body))
        }
        .instrument(span)
    });
    let io = TokioIo::new(io);
    let protocols = &context.protocols;
    let metrics = context.gateway.metrics();
    let shutdown = context.shutdown.clone();
    let watch = Watch {
        protocol,
        activity,
        limits: &protocols.limits,
        metrics,
        shutdown,
        registered,
    };
    match protocol {
        Protocol::Http1 => {
            let conn = protocols.h1.serve_connection(io, service).with_upgrades();
            drive(conn, watch).await;
        }
        // Boxed (both): HTTP/2's state stays out of HTTP/1 connections' futures.
        Protocol::Http2 => {
            let conn = protocols.h2.serve_connection(io, service);
            Box::pin(drive(conn, watch)).await;
        }
        Protocol::Sniffed => {
            if let Some(auto) = &protocols.auto {
                let conn = auto
                    .serve_connection_with_upgrades(io, service)
                    .into_owned();
                Box::pin(drive(conn, watch)).await;
            }
        }
    }
}

/// A served connection the watchdog can ask to finish (GOAWAY / no more keep-alive).
trait Served: Future<Output = Result<(), Self::Failure>> {
    type Failure: std::fmt::Display;
    fn finish(self: Pin<&mut Self>);
}

impl<I, S, B> Served for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
{
    type Failure = hyper::Error;
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Served for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    type Failure = hyper::Error;
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Served for auto::UpgradeableConnection<'_, I, S, TokioExecutor>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Error: Into<BoxError>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<BoxError>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    type Failure = BoxError;
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// What a connection's watchdog watches and listens to.
struct Watch<'c> {
    protocol: Protocol,
    activity: &'c Activity,
    limits: &'c Limits,
    metrics: &'c Metrics,
    shutdown: watch::Receiver<bool>,
    registered: &'c Registered,
}

/// Runs `conn` to its end under the watchdog: a client that keeps it waiting past the
/// current phase's deadline is closed (HTTP/1) or sent a GOAWAY (HTTP/2, then closed after
/// [`GOAWAY_GRACE`]); at shutdown it finishes what is in flight; told to go while the
/// gateway is out of connections, it goes if it still qualifies ([`crate::reclaim`]).
async fn drive<C: Served>(conn: C, watch: Watch<'_>) {
    let Watch {
        protocol,
        activity,
        limits,
        metrics,
        mut shutdown,
        registered,
    } = watch;
    tokio::pin!(conn);
    // Set once the connection was told to finish: it is closed at this time if still open.
    let mut finishing: Option<Instant> = None;
    let mut shutdown_seen = false;
    loop {
        // Look again at least every shortest phase: a request's end can bring the deadline
        // closer than the one slept towards (first head: 30 s; keep-alive after it: less).
        let check = finishing.unwrap_or_else(|| {
            let next = Instant::now() + limits.header_read_timeout.min(limits.keepalive_timeout);
            activity
                .deadline(protocol, limits)
                .map_or(next, |(at, _)| at.min(next))
        });
        tokio::select! {
            ended = &mut conn => {
                if let Err(e) = ended {
                    debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = registered.told_to_go(), if finishing.is_none() => {
                debug!("out of connections: this one kept the gateway waiting longest; closing");
                metrics.client_closed("reclaimed");
                return;
            }
            changed = shutdown.wait_for(|stop| *stop), if !shutdown_seen => {
                shutdown_seen = true;
                if changed.is_ok() {
                    conn.as_mut().finish();
                }
            }
            () = tokio::time::sleep_until(check) => {
                if finishing.is_some() {
                    debug!("connection did not finish in time; closing");
                    return;
                }
                let Some((due, phase)) = activity.deadline(protocol, limits) else { continue };
                if due > Instant::now() {
                    continue;
                }
                if protocol == Protocol::Http1 || activity.requests.load(Ordering::Relaxed) == 0 {
                    debug!(phase, "client kept the connection waiting past its deadline; closing");
                    metrics.client_closed(phase);
                    return;
                }
                debug!("HTTP/2 connection idle; GOAWAY");
                metrics.client_closed("h2_idle");
                conn.as_mut().finish();
                finishing = Some(Instant::now() + GOAWAY_GRACE);
            }
        }
    }
}

//! The accept loop: connection cap (and, out of connections, [`crate::reclaim`]; the optional
//! per-address cap), worker threads and a bounded graceful shutdown; and [`run`], everything
//! the `gateway` binary runs around it.
//! What happens on one connection (protocol, deadlines) is [`crate::connection`]'s.
//!
//! Threads: the accept loop runs on the caller's runtime and hands each connection to one of
//! `[limits] workers` threads in turn. Every worker runs a single-threaded tokio runtime with
//! its own upstream pool, so a request is read, authorized, forwarded and answered on one
//! thread without cross-thread wake-ups (nginx's worker model). State that must be shared —
//! the token cache, metrics, throttling, the tunnel registry — lives in the [`Gateway`].
//!
//! Shutdown, in order (what [`run`] does on the signal):
//! 1. `/readyz` answers 503, the listener still accepts for `drain_delay` (the load balancer
//!    and kube-proxy stop sending new traffic);
//! 2. the listener closes; in-flight requests get `shutdown_grace` to finish;
//! 3. WebSocket tunnels still open are closed; the process exits 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, TryAcquireError, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::admin::{AdminState, Readiness, serve_admin};
use crate::config::Config;
use crate::connection::{self, ConnectionContext, Held, PerAddress, Protocols};
use crate::proxy::Gateway;
use crate::reclaim::Reclaim;
use crate::reload::{self, KeyReloader, Reloadable};
use crate::tls::TlsState;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long tunnels closed at the end of the grace period get to go away.
const TUNNEL_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Serves `listener` with `config` until `shutdown` completes, then lets in-flight
/// connections finish for at most `limits.shutdown_grace`.
pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    serve_gateway(listener, Arc::new(Gateway::new(config)), None, shutdown).await;
}

/// [`serve`] with a gateway the caller keeps a handle on (key reload, metrics), and TLS when
/// `tls` is given.
pub async fn serve_gateway(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tls: Option<Arc<TlsState>>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = gateway.config().limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = PerAddress::new(limits.max_connections_per_ip);
    let protocols = Arc::new(Protocols::new(&limits));
    let (stop, stopping) = watch::channel(false);
    let (alive, mut all_gone) = mpsc::channel::<()>(1);

    if let Ok(addr) = listener.local_addr() {
        info!(
            %addr,
            tls = tls.is_some(),
            h2c = limits.h2c,
            routes = gateway.config().routes.routes().len(),
            "gateway listening"
        );
    }
    let reclaim = Reclaim::new();
    let workers = Workers::start(&gateway, &protocols, tls.as_ref(), &stopping, &reclaim);
    tokio::pin!(shutdown);
    loop {
        // The connection first, then its permit: out of permits, the gateway knows a client
        // is waiting (and may come in) before it asks others to make room.
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = per_address.admit(peer.ip()) else {
            debug!(%peer, "client address at its connection cap; closing");
            gateway.metrics().client_closed("per_address_cap");
            continue;
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => tokio::select! {
                permit = reclaim.permit(&permits) => match permit {
                    Some(permit) => permit,
                    None => break,
                },
                () = &mut shutdown => break,
            },
        };
        let _ = stream.set_nodelay(true);
        // Leave this runtime's reactor; the worker registers the socket with its own.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                debug!(error = %e, "cannot hand the connection to a worker");
                continue;
            }
        };
        let accepted = Accepted {
            stream,
            peer,
            held: Held::new(permit, slot),
            alive: alive.clone(),
        };
        if !workers.hand_over(accepted) {
            tracing::error!("every connection-serving thread has stopped; closing the listener");
            break;
        }
    }
    drop(listener);
    drop(alive);
    info!("listener closed; letting in-flight requests finish");
    let _ = stop.send(true);
    let grace_end = tokio::time::Instant::now() + limits.shutdown_grace;
    tokio::select! {
        _ = all_gone.recv() => info!("in-flight requests done"),
        () = tokio::time::sleep_until(grace_end) => {
            warn!(grace_secs = limits.shutdown_grace.as_secs(), "grace period expired; closing");
        }
    }
    // Tunnels keep going until the grace period ends (or they end by themselves).
    let tunnels = gateway.tunnels();
    while tunnels.open() > 0 && tokio::time::Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open = tunnels.open();
    if open > 0 {
        info!(
            tunnels = open,
            "grace period over; closing WebSocket tunnels"
        );
    }
    tunnels.close_all();
    tunnels.wait_closed(TUNNEL_CLOSE_WAIT).await;
    // Whatever is still running past the grace period ends with the workers' runtimes.
    workers.stop().await;
}

/// A connection the accept loop took, on its way to a worker.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    held: Held,
    /// Held for the connection's HTTP life; the shutdown waits for every copy to go.
    alive: mpsc::Sender<()>,
}

/// The connection-serving threads. Each runs a single-threaded tokio runtime (no work
/// stealing, no cross-thread wake-ups on the request path) with its own upstream pool; the
/// accept loop hands connections out in turn, the way nginx's worker processes share a port.
struct Workers {
    queues: Vec<mpsc::UnboundedSender<Accepted>>,
    stopped: Vec<oneshot::Receiver<()>>,
    next: std::cell::Cell<usize>,
}

impl Workers {
    fn start(
        gateway: &Arc<Gateway>,
        protocols: &Arc<Protocols>,
        tls: Option<&Arc<TlsState>>,
        shutdown: &watch::Receiver<bool>,
        reclaim: &Arc<Reclaim>,
    ) -> Self {
        let mut queues = Vec::new();
        let mut stopped = Vec::new();
        for index in 0..gateway.workers() {
            let (queue, rx) = mpsc::unbounded_channel();
            let (done, done_rx) = oneshot::channel();
            let context = WorkerContext {
                gateway: gateway.clone(),
                protocols: protocols.clone(),
                worker: index,
                shutdown: shutdown.clone(),
                tls: tls.cloned(),
                reclaim: reclaim.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(context.serve(rx)),
                        Err(e) => tracing::error!(worker = index, error = %e, "cannot start a worker runtime"),
                    }
                    let _ = done.send(());
                });
            match spawned {
                Ok(_) => {
                    queues.push(queue);
                    stopped.push(done_rx);
                }
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start a worker thread")
                }
            }
        }
        Workers {
            queues,
            stopped,
            next: std::cell::Cell::new(0),
        }
    }

    /// Gives the connection to the next worker still running; false when none is.
    fn hand_over(&self, mut accepted: Accepted) -> bool {
        for _ in 0..self.queues.len() {
            let index = self.next.get() % self.queues.len();
            self.next.set(index + 1);
            match self.queues[index].send(accepted) {
                Ok(()) => return true,
                Err(mpsc::error::SendError(back)) => accepted = back,
            }
        }
        false
    }

    /// Ends every worker (and what still runs on it) and waits for their threads.
    async fn stop(self) {
        drop(self.queues);
        for done in self.stopped {
            let _ = done.await;
        }
    }
}

/// What one worker serves connections with.
struct WorkerContext {
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
    worker: usize,
    shutdown: watch::Receiver<bool>,
    /// Certificates can change at runtime: the acceptor is taken for each connection.
    tls: Option<Arc<TlsState>>,
    reclaim: Arc<Reclaim>,
}

impl WorkerContext {
    /// Serves every connection handed over until the queue closes.
    async fn serve(self, mut queue: mpsc::UnboundedReceiver<Accepted>) {
        while let Some(Accepted {
            stream,
            peer,
            held,
            alive,
        }) = queue.recv().await
        {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    debug!(error = %e, "cannot register the connection");
                    continue;
                }
            };
            let context = ConnectionContext {
                gateway: self.gateway.clone(),
                protocols: self.protocols.clone(),
                tls: self.tls.as_ref().map(|t| t.acceptor()),
                worker: self.worker,
                shutdown: self.shutdown.clone(),
                _alive: alive,
                reclaim: self.reclaim.clone(),
            };
            tokio::spawn(connection::serve(context, stream, peer, held));
        }
    }
}

/// Why [`run`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The TLS certificate or key is unusable.
    #[error("TLS")]
    Tls(#[from] crate::tls::TlsError),
}

/// Everything the `gateway` binary runs: the public listener (TLS when configured), the admin
/// listener, key and certificate reload, and the shutdown sequence described in the module
/// docs, started when `signal` completes. Returns once the gateway has shut down.
pub async fn run(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: Config,
    signal: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let tls = config
        .tls
        .as_ref()
        .map(TlsState::load)
        .transpose()?
        .map(Arc::new);
    let key_watch = config.key_watch.clone();
    let drain_delay = config.drain_delay;
    let gateway = Arc::new(Gateway::new(config));
    if let Some(tls) = &tls {
        gateway.metrics().register(tls.collector());
    }
    let readiness = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    let mut background = Vec::new();
    if let Some(admin) = admin {
        let state = AdminState {
            metrics: gateway.metrics().clone(),
            readiness: readiness.clone(),
        };
        background.push(tokio::spawn(serve_admin(admin, state, stopped())));
    }
    let reloader = Arc::new(KeyReloader::new(
        key_watch.sources,
        key_watch.overlap,
        gateway.authenticator().clone(),
        gateway.reload_stats().clone(),
    ));
    // One reload loop for the key files and the TLS certificate.
    let mut reloadable: Vec<Arc<dyn Reloadable>> = vec![reloader];
    if let Some(tls) = tls.clone() {
        reloadable.push(tls);
    }
    background.push(tokio::spawn(reload::run(
        reloadable,
        key_watch.interval,
        stopped(),
    )));

    let shutdown = {
        let readiness = readiness.clone();
        async move {
            signal.await;
            readiness.drain();
            info!(
                drain_secs = drain_delay.as_secs_f64(),
                "shutdown: /readyz now fails; still accepting while load balancers catch up"
            );
            tokio::time::sleep(drain_delay).await;
        }
    };
    serve_gateway(listener, gateway, tls, shutdown).await;
    let _ = stop_tx.send(true);
    for task in background {
        let _ = task.await;
    }
    info!("gateway stopped");
    Ok(())
}

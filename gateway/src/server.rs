//! The accept loops: connection cap (and, out of connections, [`crate::reclaim`]; the
//! optional per-address cap), worker threads and a bounded graceful shutdown; and [`run`],
//! everything the `gateway` binary runs around it.
//! What happens on one connection (protocol, deadlines) is [`crate::connection`]'s.
//!
//! Threads: each of `[limits] workers` threads runs a single-threaded tokio runtime with its
//! own upstream pool and accepts on its own handle of the listening socket, so a connection
//! is accepted, read, authorized, forwarded and answered on one thread without cross-thread
//! wake-ups (nginx's worker model; a busy worker accepts less, an idle one picks up the new
//! connections). A worker that got `HANDOVER_SLACK` connections ahead of another hands
//! what it accepts to the least busy one, so keep-alive connections stay spread. The
//! caller's runtime only waits for the shutdown. State that must be shared
//! — the connection caps, the token cache, metrics, throttling, the tunnel registry — lives
//! in the [`Gateway`] and in what the accept loops admit connections by.
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

use prometheus::IntGauge;
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
    let (stop, stopping) = watch::channel(false);
    let (alive, mut all_gone) = mpsc::channel::<()>(1);
    let (accepting, mut none_accepting) = mpsc::channel::<()>(1);

    if let Ok(addr) = listener.local_addr() {
        info!(
            %addr,
            tls = tls.is_some(),
            h2c = limits.h2c,
            routes = gateway.config().routes.routes().len(),
            "gateway listening"
        );
    }
    // Leave this runtime's reactor: each worker registers a handle on the socket with its own.
    let listener = match listener.into_std() {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "cannot hand the listener to the workers");
            return;
        }
    };
    let workers = Workers::start(
        Shared {
            gateway: gateway.clone(),
            protocols: Arc::new(Protocols::new(&limits)),
            shutdown: stopping,
            tls,
            reclaim: Reclaim::new(),
        },
        &listener,
        &alive,
        &accepting,
    );
    // The workers hold their own handles now.
    drop((listener, alive, accepting));
    tokio::select! {
        () = shutdown => {}
        // Every worker's accept loop ended by itself: no thread is left to serve.
        _ = none_accepting.recv() => {
            tracing::error!("every connection-serving thread has stopped; closing the listener");
        }
    }
    let _ = stop.send(true);
    let grace_end = tokio::time::Instant::now() + limits.shutdown_grace;
    // The socket closes once the last worker drops its handle on it.
    if tokio::time::timeout_at(grace_end, none_accepting.recv())
        .await
        .is_err()
    {
        warn!("a worker did not stop accepting within the grace period");
    } else {
        info!("listener closed; letting in-flight requests finish");
    }
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

/// How far (in connections) a worker may get ahead of the least busy one before it hands what
/// it accepts over instead of serving it.
const HANDOVER_SLACK: i64 = 4;

/// What every worker's accept loop admits connections by, shared by all of them: the
/// connection cap (and, out of connections, the reclaiming), the per-address cap, and each
/// worker's load with the way to hand it a connection.
struct Admission {
    permits: Arc<Semaphore>,
    per_address: Arc<PerAddress>,
    /// Client connections each worker serves (`gateway_worker_connections`).
    loads: Vec<IntGauge>,
    /// Where each worker takes connections handed over to it.
    queues: Vec<mpsc::UnboundedSender<Handed>>,
}

impl Admission {
    /// The least busy worker when `here` is [`HANDOVER_SLACK`] or more connections ahead of
    /// it (the listener's wake-ups favour whichever worker is free at that instant, so
    /// without this one worker could end up holding most keep-alive connections).
    fn elsewhere(&self, here: usize) -> Option<usize> {
        let mine = self.loads.get(here)?.get();
        let (least, load) = self
            .loads
            .iter()
            .enumerate()
            .map(|(index, load)| (index, load.get()))
            // A worker that did not start (its queue closed) takes nothing.
            .filter(|&(index, _)| self.queues.get(index).is_some_and(|q| !q.is_closed()))
            .min_by_key(|&(_, load)| load)?;
        (least != here && mine >= load + HANDOVER_SLACK).then_some(least)
    }
}

/// A connection one worker accepted and another serves.
struct Handed {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    held: Held,
    alive: mpsc::Sender<()>,
    /// Already in the receiving worker's load, so that others see it while it is queued.
    counted: Option<Counted>,
}

/// What all workers' connections share.
struct Shared {
    gateway: Arc<Gateway>,
    protocols: Arc<Protocols>,
    /// Turns true at shutdown: workers stop accepting, connections finish.
    shutdown: watch::Receiver<bool>,
    /// Certificates can change at runtime: the acceptor is taken for each connection.
    tls: Option<Arc<TlsState>>,
    reclaim: Arc<Reclaim>,
}

/// The connection-serving threads. Each runs a single-threaded tokio runtime (no work
/// stealing, no cross-thread wake-ups on the request path) with its own upstream pool, and
/// accepts on its own handle of the listening socket, the way nginx's worker processes share
/// a port: a connection is accepted, served and closed on one thread. Only a worker too far
/// ahead of another ([`HANDOVER_SLACK`]) hands what it accepts over.
struct Workers {
    /// Dropped to end the workers' runtimes.
    end: Vec<oneshot::Sender<()>>,
    stopped: Vec<oneshot::Receiver<()>>,
}

impl Workers {
    /// Starts `gateway.workers()` threads, each accepting on its own handle on `listener`
    /// and giving its connections copies of `alive`; each holds a copy of `accepting` while
    /// it accepts.
    fn start(
        shared: Shared,
        listener: &std::net::TcpListener,
        alive: &mpsc::Sender<()>,
        accepting: &mpsc::Sender<()>,
    ) -> Self {
        let count = shared.gateway.workers();
        let metrics = shared.gateway.metrics().clone();
        let limits = &shared.gateway.config().limits;
        let mut admission = Admission {
            permits: Arc::new(Semaphore::new(limits.max_connections)),
            per_address: PerAddress::new(limits.max_connections_per_ip),
            loads: Vec::new(),
            queues: Vec::new(),
        };
        let mut inboxes = Vec::new();
        for index in 0..count {
            let (queue, inbox) = mpsc::unbounded_channel();
            admission.queues.push(queue);
            admission.loads.push(
                metrics
                    .worker_connections
                    .with_label_values(&[&index.to_string()]),
            );
            inboxes.push(inbox);
        }
        let shared = Arc::new(shared);
        let admission = Arc::new(admission);
        let mut end = Vec::new();
        let mut stopped = Vec::new();
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let listener = match listener.try_clone() {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot share the listener with a worker");
                    continue;
                }
            };
            let worker = Worker {
                shared: shared.clone(),
                admission: admission.clone(),
                index,
            };
            let alive = alive.clone();
            let accepting = accepting.clone();
            let (end_tx, end_rx) = oneshot::channel::<()>();
            let (done, done_rx) = oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name(format!("gateway-worker-{index}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(runtime) => runtime.block_on(async move {
                            tokio::spawn(worker.clone().take_over(inbox));
                            tokio::spawn(worker.accept(listener, alive, accepting));
                            let _ = end_rx.await;
                        }),
                        Err(e) => tracing::error!(worker = index, error = %e, "cannot start a worker runtime"),
                    }
                    let _ = done.send(());
                });
            match spawned {
                Ok(_) => {
                    end.push(end_tx);
                    stopped.push(done_rx);
                }
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot start a worker thread")
                }
            }
        }
        Workers { end, stopped }
    }

    /// Ends every worker (and what still runs on it) and waits for their threads.
    async fn stop(self) {
        drop(self.end);
        for done in self.stopped {
            let _ = done.await;
        }
    }
}

/// One connection-serving thread's view of the gateway.
#[derive(Clone)]
struct Worker {
    shared: Arc<Shared>,
    admission: Arc<Admission>,
    index: usize,
}

impl Worker {
    /// Accepts on `listener` (this worker's handle on the listening socket) until the
    /// shutdown, serving or handing over what it accepts; at the end, the handle and this
    /// worker's copies of `alive` and `_accepting` go.
    async fn accept(
        self,
        listener: std::net::TcpListener,
        alive: mpsc::Sender<()>,
        _accepting: mpsc::Sender<()>,
    ) {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "cannot register the listener");
                return;
            }
        };
        let mut stopping = self.shared.shutdown.clone();
        let admission = &*self.admission;
        loop {
            // The connection first, then its permit: out of permits, the gateway knows a
            // client is waiting (and may come in) before it asks others to make room.
            let (stream, peer) = tokio::select! {
                biased;
                () = stopped(&mut stopping) => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
            };
            let Some(slot) = admission.per_address.admit(peer.ip()) else {
                debug!(%peer, "client address at its connection cap; closing");
                self.shared
                    .gateway
                    .metrics()
                    .client_closed("per_address_cap");
                continue;
            };
            let permit = match admission.permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(TryAcquireError::Closed) => break,
                Err(TryAcquireError::NoPermits) => tokio::select! {
                    permit = self.shared.reclaim.permit(&admission.permits) => match permit {
                        Some(permit) => permit,
                        None => break,
                    },
                    () = stopped(&mut stopping) => break,
                },
            };
            let _ = stream.set_nodelay(true);
            let held = Held::new(permit, slot);
            match admission.elsewhere(self.index) {
                Some(other) => self.hand_over(other, stream, peer, held, alive.clone()),
                None => self.serve(stream, peer, held, alive.clone(), self.count(self.index)),
            }
        }
    }

    /// Gives a connection this worker accepted to worker `other` (or serves it here when
    /// that worker has stopped).
    fn hand_over(
        &self,
        other: usize,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        held: Held,
        alive: mpsc::Sender<()>,
    ) {
        // Leave this runtime's reactor; the other worker registers the socket with its own.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                debug!(error = %e, "cannot hand the connection to another worker");
                return;
            }
        };
        let handed = Handed {
            stream,
            peer,
            held,
            alive,
            counted: self.count(other),
        };
        let Some(queue) = self.admission.queues.get(other) else {
            return;
        };
        if let Err(mpsc::error::SendError(mut back)) = queue.send(handed) {
            // Counted here instead: the other worker's count goes first.
            drop(back.counted.take());
            back.counted = self.count(self.index);
            self.serve_handed(back);
        }
    }

    /// Serves the connections other workers hand over, until the runtime ends.
    async fn take_over(self, mut inbox: mpsc::UnboundedReceiver<Handed>) {
        while let Some(handed) = inbox.recv().await {
            self.serve_handed(handed);
        }
    }

    /// Registers a handed-over socket with this worker's reactor and serves it here.
    fn serve_handed(&self, handed: Handed) {
        match tokio::net::TcpStream::from_std(handed.stream) {
            Ok(stream) => self.serve(
                stream,
                handed.peer,
                handed.held,
                handed.alive,
                handed.counted,
            ),
            Err(e) => debug!(error = %e, "cannot register the connection"),
        }
    }

    /// One connection in worker `index`'s load, for as long as the result is held.
    fn count(&self, index: usize) -> Option<Counted> {
        self.admission.loads.get(index).cloned().map(Counted::new)
    }

    /// Serves one connection on this worker, `counted` in its load while it lasts.
    fn serve(
        &self,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        held: Held,
        alive: mpsc::Sender<()>,
        counted: Option<Counted>,
    ) {
        let shared = &*self.shared;
        let context = ConnectionContext {
            gateway: shared.gateway.clone(),
            protocols: shared.protocols.clone(),
            tls: shared.tls.as_ref().map(|t| t.acceptor()),
            worker: self.index,
            shutdown: shared.shutdown.clone(),
            _alive: alive,
            reclaim: shared.reclaim.clone(),
        };
        // Boxed: the task then moves a pointer, not the connection's whole state, each time
        // tokio moves it (into the task, on completion).
        tokio::spawn(Box::pin(async move {
            let _counted = counted;
            connection::serve(context, stream, peer, held).await;
        }));
    }
}

/// One connection in a worker's load, for as long as it is held.
struct Counted(IntGauge);

impl Counted {
    fn new(load: IntGauge) -> Self {
        load.inc();
        Counted(load)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Completes once `stopping` turns true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
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

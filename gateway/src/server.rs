//! The accept loop: HTTP/1.1 and HTTP/2 on one port (hyper-util `auto`), upgrades enabled,
//! a connection cap, a header-read timeout, header size limits and a bounded graceful
//! shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument as _, debug, info, info_span, warn};

use crate::config::Config;
use crate::proxy::Gateway;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `listener` with `config` until `shutdown` completes, then lets in-flight
/// connections finish for at most `limits.shutdown_grace`.
pub async fn serve(listener: TcpListener, config: Config, shutdown: impl Future<Output = ()>) {
    serve_gateway(listener, Arc::new(Gateway::new(config)), shutdown).await;
}

/// [`serve`] with a gateway the caller keeps a handle on (key reload calls
/// [`crate::token::Authenticator::replace_keys`] through [`Gateway::authenticator`]; metrics
/// read its counters).
pub async fn serve_gateway(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) {
    let limits = gateway.config().limits.clone();
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));

    if let Ok(addr) = listener.local_addr() {
        info!(%addr, routes = gateway.config().routes.routes().len(), "gateway listening");
    }
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
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
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            let span = info_span!(
                "request",
                method = %req.method(),
                path = %crate::proxy::loggable_path(req.uri().path())
            );
            async move { Ok::<_, Infallible>(gw.handle(req, peer).await) }.instrument(span)
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(
            async move {
                if let Err(e) = conn.await {
                    debug!(error = %e, "connection ended with an error");
                }
                drop(permit);
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
    drop(listener);
    info!("shutting down");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => {
            warn!(grace_secs = limits.shutdown_grace.as_secs(), "grace period expired; closing");
        }
    }
}

//! WebSocket (HTTP/1.1 `Upgrade`) pass-through, after the request was authorized.
//!
//! The upstream gets a dedicated connection (an upgraded connection never returns to a pool).
//! When it answers `101`, both sides are upgraded and spliced with
//! [`tokio::io::copy_bidirectional`]; the tunnel closes after the route's `read_timeout`
//! without traffic in either direction (nginx's `proxy_read_timeout` on `ws.conf`
//! locations). Frames are not inspected; the token is not re-checked on an open tunnel.
//! Any other upstream answer is forwarded as an ordinary response.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::metrics::Metrics;
use crate::pool::Dest;
use crate::proxy::{error_chain, response};
use crate::respond::{self, Body};
use crate::routes::Route;

/// The open tunnels: how many, and the switch that closes them all at shutdown.
#[derive(Debug)]
pub struct Tunnels {
    close: tokio::sync::watch::Sender<bool>,
    open: Arc<AtomicUsize>,
}

impl Default for Tunnels {
    fn default() -> Self {
        Tunnels {
            close: tokio::sync::watch::Sender::new(false),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl Tunnels {
    /// Tunnels currently open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Closes every open tunnel (and any opened from now on).
    pub fn close_all(&self) {
        self.close.send_replace(true);
    }

    /// Completes once every tunnel is gone, or after `limit`.
    pub async fn wait_closed(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.open() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Decrements the open count when a tunnel task ends, however it ends.
struct OpenGuard(Arc<AtomicUsize>, prometheus::IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        self.1.dec();
    }
}

/// Sends `up` (already rewritten, empty body) to `dial` on a fresh connection and, on `101`,
/// splices the client's upgraded connection to the upstream's.
pub async fn forward(
    up: Request<Body>,
    on_client_upgrade: OnUpgrade,
    dial: &Dest,
    connect_timeout: Duration,
    route: &Route,
    tunnels: &Tunnels,
    metrics: &Metrics,
) -> Response<Body> {
    let stream = match dial.connect(connect_timeout).await {
        Ok(s) => s,
        Err(e) => {
            warn!(route = %route.name, upstream = %dial, error = %e, "upstream connect failed");
            metrics.upstream_error(&route.name, "connect");
            return respond::bad_gateway();
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => {
            warn!(route = %route.name, error = %error_chain(&e), "upstream handshake failed");
            metrics.upstream_error(&route.name, "reset");
            return respond::bad_gateway();
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "upstream upgrade connection ended");
        }
    });
    let asked = std::time::Instant::now();
    let mut res = match tokio::time::timeout(route.read_timeout, sender.send_request(up)).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => {
            warn!(route = %route.name, error = %error_chain(&e), "upstream failed");
            metrics.upstream_error(&route.name, "reset");
            return respond::bad_gateway();
        }
        Err(_) => {
            warn!(route = %route.name, "upstream timed out");
            metrics.upstream_error(&route.name, "timeout");
            return respond::gateway_timeout();
        }
    };
    metrics
        .upstream_seconds
        .with_label_values(&[route.name.as_str()])
        .observe(asked.elapsed().as_secs_f64());
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response(res);
    }
    let on_upstream_upgrade = hyper::upgrade::on(&mut res);
    let idle = route.read_timeout;
    let name = route.name.clone();
    let gauge = metrics.tunnels_open.with_label_values(&[name.as_str()]);
    let to_upstream_bytes = metrics
        .tunnel_bytes
        .with_label_values(&[name.as_str(), "to_upstream"]);
    let to_client_bytes = metrics
        .tunnel_bytes
        .with_label_values(&[name.as_str(), "to_client"]);
    tunnels.open.fetch_add(1, Ordering::SeqCst);
    gauge.inc();
    let guard = OpenGuard(tunnels.open.clone(), gauge);
    let mut closing = tunnels.close.subscribe();
    tokio::spawn(async move {
        let _guard = guard;
        let (client, upstream) = match tokio::try_join!(on_client_upgrade, on_upstream_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                debug!(route = %name, error = %e, "upgrade failed");
                return;
            }
        };
        let stop = async move {
            // An error means the gateway is gone: close too.
            let _ = closing.wait_for(|close| *close).await;
        };
        let (to_upstream, to_client) =
            tunnel(TokioIo::new(client), TokioIo::new(upstream), idle, stop).await;
        to_upstream_bytes.inc_by(to_upstream);
        to_client_bytes.inc_by(to_client);
        debug!(route = %name, to_upstream, to_client, "tunnel closed");
    });
    response(res)
}

/// Splices `a` and `b` until either side closes, nothing moves for `idle`, or `stop`
/// completes (shutdown); returns the bytes moved each way (a→b, b→a), whatever ended it.
pub async fn tunnel<A, B>(a: A, b: B, idle: Duration, stop: impl Future<Output = ()>) -> (u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let a_to_b = Arc::new(AtomicU64::new(0));
    let b_to_a = Arc::new(AtomicU64::new(0));
    let mut a = Tracked {
        io: a,
        start,
        last: last.clone(),
        read: a_to_b.clone(),
    };
    let mut b = Tracked {
        io: b,
        start,
        last: last.clone(),
        read: b_to_a.clone(),
    };
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    tokio::pin!(stop);
    loop {
        let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            _ = &mut copy => break,
            () = &mut stop => {
                debug!("tunnel closed by shutdown");
                break;
            }
            () = tokio::time::sleep_until(deadline) => {
                let quiet_since = start + Duration::from_millis(last.load(Ordering::Relaxed));
                if Instant::now().duration_since(quiet_since) >= idle {
                    debug!(idle_secs = idle.as_secs(), "tunnel idle; closing");
                    break;
                }
            }
        }
    }
    (
        a_to_b.load(Ordering::Relaxed),
        b_to_a.load(Ordering::Relaxed),
    )
}

/// An I/O object that records when bytes last moved through it and how many it read.
struct Tracked<T> {
    io: T,
    start: Instant,
    last: Arc<AtomicU64>,
    read: Arc<AtomicU64>,
}

impl<T> Tracked<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.io).poll_read(cx, buf);
        let got = buf.filled().len().saturating_sub(before);
        if matches!(res, Poll::Ready(Ok(()))) && got > 0 {
            this.touch();
            this.read.fetch_add(got as u64, Ordering::Relaxed);
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_tunnel_closes_after_the_timeout() {
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, mut b_peer) = tokio::io::duplex(64);
        let task = tokio::spawn(tunnel(
            a,
            b,
            Duration::from_secs(60),
            std::future::pending(),
        ));
        a_peer.write_all(b"hi").await.unwrap_or_default();
        let mut got = [0u8; 2];
        b_peer.read_exact(&mut got).await.unwrap_or_default();
        assert_eq!(&got, b"hi");
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(task.await.ok(), Some((2, 0)));
    }

    #[tokio::test]
    async fn shutdown_closes_a_busy_tunnel_and_reports_its_bytes() {
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, mut b_peer) = tokio::io::duplex(64);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tunnel(a, b, Duration::from_secs(3600), async {
            let _ = stop_rx.await;
        }));
        b_peer.write_all(b"hello").await.unwrap_or_default();
        let mut got = [0u8; 5];
        a_peer.read_exact(&mut got).await.unwrap_or_default();
        let _ = stop_tx.send(());
        assert_eq!(task.await.ok(), Some((0, 5)));
        // Both peers see the tunnel gone.
        let mut rest = Vec::new();
        assert_eq!(a_peer.read_to_end(&mut rest).await.ok(), Some(0));
    }
}

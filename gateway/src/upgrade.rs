//! WebSocket (HTTP/1.1 `Upgrade`) pass-through, after the request was authorized.
//!
//! The upstream exchange is [`crate::upstream`]'s (a dedicated connection, never pooled).
//! When the upstream answers `101`, both sides are upgraded and spliced by [`crate::splice`]
//! (no buffer held while the tunnel is idle); the tunnel closes after the route's
//! `read_timeout` without traffic in either direction (nginx's `proxy_read_timeout` on
//! `ws.conf` locations). Frames are not inspected; the token is not re-checked on an open tunnel.
//! Bytes are counted as they pass (the counters move every few seconds), and the tunnel's
//! end writes one access line with its duration and bytes each way.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use std::net::IpAddr;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tracing::debug;

use crate::metrics::Metrics;
use crate::pool::Dest;
use crate::routes::Route;

/// How often an open tunnel adds what it carried to the byte counters.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

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

/// What a tunnel's access line and metrics name.
#[derive(Debug)]
pub(crate) struct TunnelInfo<'r> {
    pub route: &'r Route,
    pub client: IpAddr,
    pub upstream: Dest,
}

/// Splices the client's upgraded connection to the upstream's once both upgrades complete,
/// on a task of its own; the byte counters move every [`FLUSH_EVERY`] while it is open, and
/// one access line (target `access`) says how long it lasted and what it carried.
pub(crate) fn splice(
    on_client: OnUpgrade,
    on_upstream: OnUpgrade,
    info: TunnelInfo<'_>,
    tunnels: &Tunnels,
    metrics: &Metrics,
) {
    let idle = info.route.read_timeout;
    let name = info.route.name.clone();
    let client = info.client;
    let upstream = info.upstream;
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
        let opened = Instant::now();
        let (client_io, upstream_io) = match tokio::try_join!(on_client, on_upstream) {
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
        let flush = |up: u64, down: u64| {
            to_upstream_bytes.inc_by(up);
            to_client_bytes.inc_by(down);
        };
        let (to_upstream, to_client) = tunnel(
            TokioIo::new(client_io),
            TokioIo::new(upstream_io),
            idle,
            stop,
            flush,
        )
        .await;
        tracing::info!(
            target: "access",
            route = %name,
            client = %client,
            upstream = %upstream,
            duration_ms = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes_to_upstream = to_upstream,
            bytes_to_client = to_client,
            "tunnel closed"
        );
    });
}

/// Splices `a` and `b` until either side closes, nothing moves for `idle`, or `stop`
/// completes (shutdown); returns the bytes moved each way (a→b, b→a), whatever ended it.
/// `flush` is given the bytes moved each way since its last call, every [`FLUSH_EVERY`]
/// while bytes move and once at the end.
pub async fn tunnel<A, B>(
    a: A,
    b: B,
    idle: Duration,
    stop: impl Future<Output = ()>,
    mut flush: impl FnMut(u64, u64),
) -> (u64, u64)
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
    let copy = crate::splice::copy_both_ways(&mut a, &mut b);
    tokio::pin!(copy);
    tokio::pin!(stop);
    let mut flushed = (0, 0);
    let mut flush_new = |flush: &mut dyn FnMut(u64, u64)| {
        let now = (
            a_to_b.load(Ordering::Relaxed),
            b_to_a.load(Ordering::Relaxed),
        );
        if now != flushed {
            flush(now.0 - flushed.0, now.1 - flushed.1);
            flushed = now;
        }
        now
    };
    let mut next_flush = Instant::now() + FLUSH_EVERY;
    loop {
        let deadline = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            _ = &mut copy => break,
            () = tokio::time::sleep_until(next_flush) => {
                flush_new(&mut flush);
                next_flush = Instant::now() + FLUSH_EVERY;
            }
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
    flush_new(&mut flush)
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
            |_, _| {},
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
        let task = tokio::spawn(tunnel(
            a,
            b,
            Duration::from_secs(3600),
            async {
                let _ = stop_rx.await;
            },
            |_, _| {},
        ));
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

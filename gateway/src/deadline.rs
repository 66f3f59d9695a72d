//! A deadline on writes, for both sides of the proxy: the client's socket (`send_timeout`)
//! and the upstream's (the route's `send_timeout`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What a write gets when its peer left it waiting past the limit (inside an
/// `io::Error` of kind `TimedOut`; [`crate::body::caused_by`] finds it there).
#[derive(Debug, thiserror::Error)]
#[error("peer did not read within the send timeout")]
pub(crate) struct SendTimedOut;

/// An I/O object whose writes fail when the peer leaves one waiting for `limit` (nginx
/// `send_timeout` / `proxy_send_timeout`: the time between two successful writes). The timer
/// exists only once a write had to wait.
#[derive(Debug)]
pub(crate) struct WriteDeadline<I> {
    io: I,
    limit: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    expired: bool,
}

impl<I> WriteDeadline<I> {
    pub(crate) fn new(io: I, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            sleep: None,
            waiting: false,
            expired: false,
        }
    }

    /// Whether a write failed because the peer left it waiting past the limit.
    pub(crate) fn expired(&self) -> bool {
        self.expired
    }

    /// The wrapped I/O object, for reads that bypass the deadline's bookkeeping.
    pub(crate) fn inner_mut(&mut self) -> &mut I {
        &mut self.io
    }

    /// Passes a write's outcome on; a wait arms the deadline, which fails the write when due.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + self.limit;
            match &mut self.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match self.sleep.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                self.expired = true;
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    SendTimedOut,
                )))
            }
            _ => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

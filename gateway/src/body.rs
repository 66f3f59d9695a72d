//! Body adapters of the request path: the idle bound between two frames, the route's size
//! limit on a streaming request body (and the signal that it was sent whole), and reading a
//! refused upload to its end.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, Incoming, SizeHint};

use crate::reclaim::ClientWait;
use crate::respond::BoxError;

/// How long a refused upload is read and thrown away, in all and between two reads (nginx's
/// `lingering_time` and `lingering_timeout`).
const DISCARD_TIME: Duration = Duration::from_secs(30);
const DISCARD_IDLE: Duration = Duration::from_secs(5);

/// The request body went over the route's limit.
#[derive(Debug, thiserror::Error)]
#[error("request body over the route's limit")]
pub struct BodyTooLarge;

/// A body stalled longer than its idle limit.
#[derive(Debug, thiserror::Error)]
#[error("body idle for longer than its timeout")]
pub struct BodyIdle;

/// A body that fails when its source keeps it waiting for `idle`. The clock runs only while
/// the source has nothing to give (from the first `Pending` after a frame), not while the
/// consumer is busy; a body that never waits never touches the timer.
#[derive(Debug)]
pub(crate) struct IdleTimeout<B> {
    inner: B,
    idle: Duration,
    /// Created on the first wait, re-armed at the start of each later one.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether the current wait's deadline is set.
    waiting: bool,
    /// The client connection whose waits these are (a request body), told of each.
    connection: Option<Arc<ClientWait>>,
}

impl<B> IdleTimeout<B> {
    pub(crate) fn new(inner: B, idle: Duration) -> Self {
        IdleTimeout {
            inner,
            idle,
            sleep: None,
            waiting: false,
            connection: None,
        }
    }
}

impl<B> hyper::body::Body for IdleTimeout<B>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if this.waiting {
                this.waiting = false;
                if let Some(connection) = &this.connection {
                    connection.moved();
                }
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            if let Some(connection) = &this.connection {
                connection.waits();
            }
            let deadline = tokio::time::Instant::now() + this.idle;
            match &mut this.sleep {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => this.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match this.sleep.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Some(Err(Box::new(BodyIdle)))),
            _ => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Set once a request body has gone through whole; the upstream's read timeout starts then.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    done: AtomicBool,
    notify: tokio::sync::Notify,
}

impl Sent {
    pub(crate) fn fire(&self) {
        self.done.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::Acquire)
    }

    /// Completes once the body was sent whole.
    pub(crate) async fn wait(&self) {
        while !self.is_done() {
            self.notify.notified().await;
        }
    }
}

/// A client's request body on its way upstream: at most `remaining` more bytes, no longer
/// than the client body timeout between two reads, and [`Sent`] fired at its end.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: IdleTimeout<Incoming>,
    remaining: u64,
    sent: Arc<Sent>,
}

impl RequestBody {
    pub(crate) fn new(body: Incoming, limit: u64, idle: Duration, sent: Arc<Sent>) -> Self {
        RequestBody {
            inner: IdleTimeout::new(body, idle),
            remaining: limit,
            sent,
        }
    }

    /// The same body, telling `connection` when it waits on the client.
    pub(crate) fn waited_on_by(mut self, connection: Option<Arc<ClientWait>>) -> Self {
        self.inner.connection = connection;
        self
    }
}

impl hyper::body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => {
                this.sent.fire();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Reads `body` to its end and drops the bytes, for at most [`DISCARD_TIME`]: a client still
/// sending a refused upload then gets to read the answer. Closing at once would reset the
/// connection under the client's pending writes, and the answer would be lost with it.
pub(crate) fn discard(body: Incoming) {
    if hyper::body::Body::is_end_stream(&body) {
        return;
    }
    let mut body = IdleTimeout::new(body, DISCARD_IDLE);
    tokio::spawn(tokio::time::timeout(DISCARD_TIME, async move {
        while let Some(Ok(_)) = body.frame().await {}
    }));
}

/// Whether `error` (or one of its sources) is an `E`.
pub(crate) fn caused_by<E: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        // An `io::Error`'s `source` skips the error it wraps: that one is looked at here.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if e.is::<E>() || wrapped.is_some_and(|w| w.is::<E>()) {
            return true;
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_found_through_the_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] BodyIdle);
        assert!(caused_by::<BodyIdle>(&Outer(BodyIdle)));
        assert!(!caused_by::<BodyTooLarge>(&Outer(BodyIdle)));
    }

    #[test]
    fn causes_are_found_inside_io_errors() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let io = || std::io::Error::new(std::io::ErrorKind::TimedOut, BodyIdle);
        assert!(caused_by::<BodyIdle>(&io()));
        assert!(caused_by::<BodyIdle>(&Outer(io())));
        assert!(!caused_by::<BodyTooLarge>(&Outer(io())));
    }
}

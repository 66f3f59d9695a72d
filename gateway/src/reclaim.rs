//! What the gateway does when it is out of connections and another client knocks: it asks
//! the connections that only make it wait to go, the ones that have kept it waiting longest
//! first, a batch at a time.
//!
//! A connection can be asked to go when nothing it owes the gateway is in progress
//! elsewhere:
//! - no request in flight: not yet a complete first head (silent, slow head, an HTTP/2
//!   preface and nothing after it), idle keep-alive, an HTTP/2 connection with no open
//!   stream; its age counts from accept or from the end of its last request;
//! - an HTTP/1 request in flight that waits on its client: a request body that does not come,
//!   a response the client does not read; its age counts from the start of that wait.
//!
//! Never asked: a request waiting on its upstream (a long poll is not the client's fault), an
//! HTTP/2 connection with an open stream, a WebSocket tunnel.
//!
//! nginx does the first kind only (its "reusable" connections: idle keep-alive and those that
//! have sent nothing yet), 32 at a time, oldest first. Here a request, ladder rung by rung,
//! names the youngest age it may close ([`LADDER`]), so the oldest go first; a connection must
//! have waited at least the last rung (one second) to be closed this way, so an active client
//! is never taken for an idle one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tracing::warn;

/// The ages a request may name, oldest first: each round that frees nothing goes one lower.
pub(crate) const LADDER: [Duration; 7] = [
    Duration::from_secs(64),
    Duration::from_secs(32),
    Duration::from_secs(16),
    Duration::from_secs(8),
    Duration::from_secs(4),
    Duration::from_secs(2),
    Duration::from_secs(1),
];
/// At most this many connections go per request (nginx: 32).
const BATCH: usize = 32;
/// How long one round waits for a connection to go before the next rung.
const ROUND: Duration = Duration::from_millis(10);
/// The longest round, at the last rung.
const LAST_ROUND: Duration = Duration::from_secs(1);
/// At most one warning this often while the gateway is out of connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One request to the connections: those that have waited at least `older_than` may go, as
/// long as `budget` lasts.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub(crate) older_than: Duration,
    budget: Arc<AtomicUsize>,
}

impl Ask {
    /// Takes one place in this request's batch; false once the batch is full.
    pub(crate) fn take(&self) -> bool {
        self.budget
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(1)
            })
            .is_ok()
    }
}

/// The accept loop's side: it sends requests, every connection listens.
#[derive(Debug)]
pub(crate) struct Reclaim {
    asks: watch::Sender<Ask>,
    /// The rung to start from next time (where the last request found connections to close).
    rung: AtomicUsize,
    last_warning: std::sync::Mutex<Option<Instant>>,
}

impl Reclaim {
    pub(crate) fn new() -> Arc<Self> {
        let first = Ask {
            older_than: Duration::MAX,
            budget: Arc::new(AtomicUsize::new(0)),
        };
        Arc::new(Reclaim {
            asks: watch::Sender::new(first),
            rung: AtomicUsize::new(0),
            last_warning: std::sync::Mutex::new(None),
        })
    }

    /// A connection's ear for requests; it hears only those sent after this call.
    pub(crate) fn listen(&self) -> watch::Receiver<Ask> {
        self.asks.subscribe()
    }

    /// A connection permit when there is none free: asks the connections that keep the
    /// gateway waiting to go, rung by rung, until one does (`None` if the permits closed).
    pub(crate) async fn permit(&self, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        self.warn_now_and_then(permits);
        let mut rung = self.rung.load(Ordering::Relaxed).min(LADDER.len() - 1);
        let mut round = ROUND;
        loop {
            self.asks.send_replace(Ask {
                older_than: LADDER[rung],
                budget: Arc::new(AtomicUsize::new(BATCH)),
            });
            match tokio::time::timeout(round, permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => {
                    // Next time start one rung older: younger connections than needed
                    // should not go while older ones would do.
                    self.rung.store(rung.saturating_sub(1), Ordering::Relaxed);
                    return Some(permit);
                }
                Ok(Err(_)) => return None,
                // At the last rung, ask less and less often (nothing may qualify for long:
                // every slot a tunnel or a request waiting on its upstream).
                Err(_) if rung == LADDER.len() - 1 => round = (round * 2).min(LAST_ROUND),
                Err(_) => rung += 1,
            }
        }
    }

    fn warn_now_and_then(&self, permits: &Semaphore) {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            warn!(
                available = permits.available_permits(),
                "connection limit reached: closing the connections that keep the gateway waiting longest"
            );
        }
    }
}

/// "No wait recorded" in [`ClientWait`].
const NOT_WAITING: u64 = u64::MAX;

/// Whether a connection's request in flight waits on its client, and since when: set by the
/// connection's writes and by its request body's reads.
#[derive(Debug)]
pub(crate) struct ClientWait {
    epoch: Instant,
    /// Milliseconds since `epoch`, or [`NOT_WAITING`].
    since: std::sync::atomic::AtomicU64,
}

impl ClientWait {
    pub(crate) fn new(epoch: Instant) -> Arc<Self> {
        Arc::new(ClientWait {
            epoch,
            since: std::sync::atomic::AtomicU64::new(NOT_WAITING),
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NOT_WAITING - 1)
    }

    /// The gateway waits on the client from now on (unless it already did).
    pub(crate) fn waits(&self) {
        if self.since.load(Ordering::Relaxed) == NOT_WAITING {
            self.since.store(self.now(), Ordering::Relaxed);
        }
    }

    /// The client sent or took bytes.
    pub(crate) fn moved(&self) {
        if self.since.load(Ordering::Relaxed) != NOT_WAITING {
            self.since.store(NOT_WAITING, Ordering::Relaxed);
        }
    }

    /// How long the current wait has lasted, if there is one.
    pub(crate) fn waited(&self) -> Option<Duration> {
        match self.since.load(Ordering::Relaxed) {
            NOT_WAITING => None,
            since => Some(Duration::from_millis(self.now().saturating_sub(since))),
        }
    }
}

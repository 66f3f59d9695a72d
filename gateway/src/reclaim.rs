//! What the gateway does when it is out of connections and another client knocks: it tells
//! the connections that only make it wait to go, the ones that have kept it waiting longest
//! first, a batch at a time.
//!
//! A connection can be told to go when nothing it owes the gateway is in progress elsewhere:
//! - no request in flight: a TLS handshake or a first head that does not come (silent, slow
//!   head, an HTTP/2 preface and nothing after it), idle keep-alive, an HTTP/2 connection
//!   with no open stream; its age counts from accept or from the end of its last request;
//! - an HTTP/1 request in flight that waits on its client: a request body that does not come,
//!   a response the client does not read; its age counts from the start of that wait.
//!
//! Never told: a request waiting on its upstream (a long poll is not the client's fault), an
//! HTTP/2 connection with an open stream, a WebSocket tunnel.
//!
//! nginx does the first kind only (its "reusable" connections: idle keep-alive and those that
//! have sent nothing yet), 32 at a time, oldest first. Here every connection is in one
//! registry ([`Reclaim::register`]); out of connections, a worker's accept loop reads the age of
//! each (a few atomic loads, no wake-up) and tells only the chosen ones: those in the oldest
//! band of [`LADDER`] that has any, at most [`BATCH`], so younger connections stay while older
//! ones suffice. A connection must have waited a least time to be chosen: a tenth of a second
//! with no request in flight (nginx has no such floor: its reusable connections go however
//! young, which keeps new clients coming in while hostile ones reconnect as fast as they are
//! closed), one second for a request that waits on its client (closing one loses a response
//! or an upload, so a slow link's pause must not count). Told, a connection looks at itself
//! again and stays if a request began meanwhile.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tracing::warn;

/// The age bands, oldest first: the connections told to go are those in the oldest band that
/// has any.
pub(crate) const LADDER: [Duration; 10] = [
    Duration::from_secs(64),
    Duration::from_secs(32),
    Duration::from_secs(16),
    Duration::from_secs(8),
    Duration::from_secs(4),
    Duration::from_secs(2),
    Duration::from_secs(1),
    Duration::from_millis(500),
    Duration::from_millis(250),
    Duration::from_millis(100),
];
/// The least a connection with no request in flight must have waited to be told to go.
const LEAST_IDLE: Duration = LADDER[LADDER.len() - 1];
/// The least a request that waits on its client must have waited.
const LEAST_MID_REQUEST: Duration = Duration::from_secs(1);
/// At most this many connections are told per round (nginx: 32).
const BATCH: usize = 32;
/// How long a round that told some connections waits for one of them to go.
const ROUND: Duration = Duration::from_millis(10);
/// The longest pause between two rounds that found nobody to tell.
const LAST_ROUND: Duration = Duration::from_secs(1);
/// At most one warning this often while the gateway is out of connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the registry asks of a connection: how long it has kept the gateway waiting with
/// nothing else in progress, or `None` when it may not be told to go.
pub(crate) trait Waiting: Send + Sync {
    fn waited(&self) -> Option<Waited>;
}

/// How long a connection has kept the gateway waiting, and on what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// No request in flight, for this long.
    Idle(Duration),
    /// A request in flight waits on its client, for this long.
    MidRequest(Duration),
}

impl Waited {
    /// Its age, when it is at least the least for its kind.
    fn qualifying(self) -> Option<Duration> {
        match self {
            Waited::Idle(age) => (age >= LEAST_IDLE).then_some(age),
            Waited::MidRequest(age) => (age >= LEAST_MID_REQUEST).then_some(age),
        }
    }
}

/// Every open connection, and the accept loops' way to tell some of them to go.
pub(crate) struct Reclaim {
    live: Mutex<HashMap<u64, Live>>,
    next_id: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Reclaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reclaim")
            .field("live", &self.lock().len())
            .finish_non_exhaustive()
    }
}

struct Live {
    waiting: Arc<dyn Waiting>,
    told: Arc<Notify>,
}

/// One connection's place in the registry; leaves it on drop.
pub(crate) struct Registered {
    reclaim: Arc<Reclaim>,
    id: u64,
    waiting: Arc<dyn Waiting>,
    told: Arc<Notify>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered").field("id", &self.id).finish()
    }
}

impl Registered {
    /// Completes when the connection was told to go and, looking at itself again, still
    /// qualifies (a request may have begun since it was chosen).
    pub(crate) async fn told_to_go(&self) {
        loop {
            self.told.notified().await;
            if self.waiting.waited().and_then(Waited::qualifying).is_some() {
                return;
            }
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.reclaim.lock().remove(&self.id);
    }
}

impl Reclaim {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Reclaim {
            live: Mutex::default(),
            next_id: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    /// Enters a connection in the registry for as long as the returned place lives.
    pub(crate) fn register(self: &Arc<Self>, waiting: Arc<dyn Waiting>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let told = Arc::new(Notify::new());
        self.lock().insert(
            id,
            Live {
                waiting: waiting.clone(),
                told: told.clone(),
            },
        );
        Registered {
            reclaim: self.clone(),
            id,
            waiting,
            told,
        }
    }

    /// A connection permit when there is none free: tells the connections that keep the
    /// gateway waiting longest to go, round by round, until one does (`None` if the permits
    /// closed).
    pub(crate) async fn permit(&self, permits: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
        self.warn_now_and_then(permits);
        let mut pause = ROUND;
        loop {
            let wait = if self.tell_oldest() > 0 {
                pause = ROUND;
                ROUND
            } else {
                // Nobody qualifies (every slot a tunnel, a request waiting on its upstream,
                // or younger than its floor): look again less and less often.
                let wait = pause;
                pause = (pause * 2).min(LAST_ROUND);
                wait
            };
            match tokio::time::timeout(wait, permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => return Some(permit),
                Ok(Err(_)) => return None,
                Err(_) => {}
            }
        }
    }

    /// Tells the connections in the oldest band that has any (at most [`BATCH`], oldest
    /// first) to go; returns how many were told.
    fn tell_oldest(&self) -> usize {
        let live = self.lock();
        let mut ages: Vec<(Duration, &Arc<Notify>)> = live
            .values()
            .filter_map(|l| {
                let age = l.waiting.waited()?.qualifying()?;
                Some((age, &l.told))
            })
            .collect();
        let Some(oldest) = ages.iter().map(|(age, _)| *age).max() else {
            return 0;
        };
        let band = LADDER
            .iter()
            .copied()
            .find(|&band| band <= oldest)
            .unwrap_or(LEAST_IDLE);
        ages.retain(|(age, _)| *age >= band);
        if ages.len() > BATCH {
            ages.select_nth_unstable_by(BATCH - 1, |a, b| b.0.cmp(&a.0));
            ages.truncate(BATCH);
        }
        for (_, told) in &ages {
            told.notify_one();
        }
        ages.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Live>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn warn_now_and_then(&self, permits: &Semaphore) {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    since: AtomicU64,
}

impl ClientWait {
    pub(crate) fn new(epoch: Instant) -> Arc<Self> {
        Arc::new(ClientWait {
            epoch,
            since: AtomicU64::new(NOT_WAITING),
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

//! Per-client-IP throttling of authentication failures: after `limit` refused tokens within
//! `window`, a client address gets 429 with `Retry-After` (no token work at all) until its
//! window ends. It bounds what one source can make the gateway verify, on top of the negative
//! cache (which only helps when the same bad token repeats).
//!
//! Keyed by the TCP peer address: behind a NodePort with SNAT many users can share one
//! address, which is why the default limit is generous (300 failures per 10 s); set
//! `auth_failures_per_ip = 0` to turn throttling off.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// Default failures allowed per address and window.
pub const DEFAULT_LIMIT: u32 = 300;
/// Default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Addresses tracked at most (older windows are dropped first).
const MAX_TRACKED: u64 = 100_000;

#[derive(Debug)]
struct Window {
    start: Instant,
    failures: AtomicU32,
}

/// The failure counters.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    windows: moka::sync::Cache<IpAddr, Arc<Window>>,
    /// Requests answered 429.
    pub throttled: IntCounter,
}

impl AuthThrottle {
    /// `limit` failures per `window` per address; a zero limit disables throttling.
    pub fn new(limit: u32, window: Duration) -> Self {
        AuthThrottle {
            limit,
            window,
            windows: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(window)
                .build(),
            throttled: IntCounter::new(
                "gateway_auth_throttled_total",
                "Requests refused with 429 after too many authentication failures.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        }
    }

    /// `Some(retry_after)` when `ip` is over its limit in the current window.
    pub fn check(&self, ip: IpAddr) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let window = self.windows.get(&ip)?;
        if window.failures.load(Ordering::Relaxed) < self.limit {
            return None;
        }
        let left = self.window.saturating_sub(window.start.elapsed());
        if left.is_zero() {
            return None;
        }
        self.throttled.inc();
        Some(left)
    }

    /// Counts one authentication failure from `ip`.
    pub fn failure(&self, ip: IpAddr) {
        if self.limit == 0 {
            return;
        }
        let window = self.windows.get_with(ip, || {
            Arc::new(Window {
                start: Instant::now(),
                failures: AtomicU32::new(0),
            })
        });
        window.failures.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_limit_waits_for_its_window_others_do_not() {
        let throttle = AuthThrottle::new(3, Duration::from_millis(300));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for _ in 0..3 {
            assert_eq!(throttle.check(a), None);
            throttle.failure(a);
        }
        let wait = throttle.check(a).unwrap();
        assert!(wait <= Duration::from_millis(300) && !wait.is_zero());
        assert_eq!(throttle.check(b), None);
        assert_eq!(throttle.throttled.get(), 1);
        std::thread::sleep(Duration::from_millis(320));
        assert_eq!(throttle.check(a), None, "the window ended");
    }

    #[test]
    fn zero_disables() {
        let throttle = AuthThrottle::new(0, Duration::from_secs(10));
        let a: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..1000 {
            throttle.failure(a);
        }
        assert_eq!(throttle.check(a), None);
    }
}

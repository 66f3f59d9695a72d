//! Per-client-IP throttling of authentication failures: after `limit` refused tokens within
//! `window`, a client address gets 429 with `Retry-After` (no token work at all) until its
//! window ends. It bounds what one source can make the gateway verify, on top of the negative
//! cache (which only helps when the same bad token repeats).
//!
//! Keyed by the client address ([`AuthThrottle::client`]):
//! - the TCP peer, unless the peer is one of `trusted_proxies` (none by default): then the
//!   right-most `X-Forwarded-For` entry that is not itself a trusted proxy, so that behind an
//!   ingress or a load balancer each user is counted on their own and not all as the proxy;
//! - an IPv6 client counts for its whole `/64` (`auth_ipv6_prefix`), since one host usually
//!   holds a whole /64 and could otherwise escape by rotating addresses within it;
//! - behind a NodePort with SNAT many users still share one address, which is why the default
//!   limit is generous (300 failures per 10 s); `auth_failures_per_ip = 0` turns it off.
//!
//! A request without any token costs no crypto and is not counted as a failure.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use ipnet::IpNet;
use prometheus::IntCounter;

use crate::token::Refusal;

/// Default failures allowed per address and window.
pub const DEFAULT_LIMIT: u32 = 300;
/// Default window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);
/// Default IPv6 prefix length a client is counted by.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Addresses tracked at most (older windows are dropped first).
const MAX_TRACKED: u64 = 100_000;

#[derive(Debug)]
struct Window {
    start: Instant,
    failures: AtomicU32,
}

/// How client addresses are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grouping {
    /// IPv6 clients are counted by this prefix (128 = per address).
    pub ipv6_prefix: u8,
    /// Peers whose `X-Forwarded-For` names the client; empty = always the TCP peer.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Grouping {
    fn default() -> Self {
        Grouping {
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
            trusted_proxies: Vec::new(),
        }
    }
}

/// What the config's `[abuse]` and `[clients]` sections set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abuse {
    /// Refused tokens per client address and window before 429; 0 disables.
    pub auth_failures_per_ip: u32,
    /// The counting window.
    pub auth_failure_window: Duration,
    /// How clients are told apart (IPv6 prefix, trusted proxies).
    pub grouping: Grouping,
}

/// The failure counters.
#[derive(Debug)]
pub struct AuthThrottle {
    limit: u32,
    window: Duration,
    grouping: Grouping,
    windows: moka::sync::Cache<IpAddr, Arc<Window>>,
    /// Where [`AuthThrottle::limited_until`] counts from.
    epoch: Instant,
    /// When (nanoseconds after `epoch`) the last window that reached the limit ends: until
    /// then some client may be throttled; after it none is, and `check` needs no lookup.
    limited_until: AtomicU64,
    /// Requests answered 429.
    pub throttled: IntCounter,
}

impl AuthThrottle {
    /// `limit` failures per `window` per address; a zero limit disables throttling (the unit
    /// tests' throttle; the gateway's comes from [`AuthThrottle::from_config`]).
    #[cfg(test)]
    fn new(limit: u32, window: Duration) -> Self {
        Self::with_grouping(limit, window, Grouping::default())
    }

    /// The throttle the `[abuse]` settings describe.
    pub fn from_config(abuse: &Abuse) -> Self {
        Self::with_grouping(
            abuse.auth_failures_per_ip,
            abuse.auth_failure_window,
            abuse.grouping.clone(),
        )
    }

    /// `limit` failures per `window` per client, client addresses told apart by `grouping`.
    pub fn with_grouping(limit: u32, window: Duration, grouping: Grouping) -> Self {
        AuthThrottle {
            limit,
            window,
            grouping,
            windows: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED)
                .time_to_live(window)
                .build(),
            epoch: Instant::now(),
            limited_until: AtomicU64::new(0),
            throttled: IntCounter::new(
                "gateway_auth_throttled_total",
                "Requests refused with 429 after too many authentication failures.",
            )
            .unwrap_or_else(|_| unreachable!("valid metric name")),
        }
    }

    /// `Some(retry_after)` when `ip` is over its limit in the current window.
    pub fn check(&self, ip: IpAddr) -> Option<Duration> {
        if self.limit == 0 || self.since_epoch(Instant::now()) >= self.limited_until() {
            // No window that reached the limit is still open: nobody is throttled.
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

    /// Whether `peer`'s forwarding headers (`X-Forwarded-For`, `X-Real-IP`,
    /// `X-Forwarded-Proto`) may reach the upstream: always while no trusted proxy is
    /// configured (the original passed them), else only from a trusted proxy.
    pub fn may_forward_for(&self, peer: IpAddr) -> bool {
        let proxies = &self.grouping.trusted_proxies;
        let peer = peer.to_canonical();
        proxies.is_empty() || proxies.iter().any(|n| n.contains(&peer))
    }

    /// The address failures of a request from `peer` with `headers` count against.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        let trusted = |ip: &IpAddr| self.grouping.trusted_proxies.iter().any(|n| n.contains(ip));
        let mut client = peer;
        if trusted(&peer) {
            // Right to left: each hop appended the address it saw; the first one that is not
            // a trusted proxy is the client. Anything unreadable stops the walk there.
            let hops = headers
                .get_all("x-forwarded-for")
                .iter()
                .rev()
                .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
            for hop in hops {
                let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                    break;
                };
                client = ip.to_canonical();
                if !trusted(&client) {
                    break;
                }
            }
        }
        match client {
            IpAddr::V6(v6) => {
                let prefix = self.grouping.ipv6_prefix.min(128);
                let net = ipnet::Ipv6Net::new(v6, prefix).map_or(v6, |n| n.network());
                IpAddr::V6(net)
            }
            v4 => v4,
        }
    }

    /// Counts `refusal` against `client` when it is an authentication failure: a 401 for a
    /// token that was there (a missing token costs no crypto and is not held against anyone).
    pub fn refused(&self, client: IpAddr, refusal: Refusal) {
        if refusal.status() == 401 && refusal != Refusal::Missing {
            self.failure(client);
        }
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
        let failures = window
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if failures >= self.limit {
            let end = self.since_epoch(window.start + self.window);
            self.limited_until.fetch_max(end, Ordering::Relaxed);
        }
    }

    /// The end of the last window that reached the limit, in nanoseconds after `epoch`.
    fn limited_until(&self) -> u64 {
        self.limited_until.load(Ordering::Relaxed)
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
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
    fn checks_skip_the_lookup_only_once_every_window_at_its_limit_has_ended() {
        let throttle = AuthThrottle::new(2, Duration::from_millis(1500));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        throttle.failure(a);
        assert_eq!(throttle.limited_until(), 0, "nobody at the limit yet");
        throttle.failure(a);
        let a_ends = throttle.limited_until();
        assert!(a_ends > 0);
        std::thread::sleep(Duration::from_millis(1000));
        // b's window opens later and ends later: checks must keep looking until it ends.
        throttle.failure(b);
        throttle.failure(b);
        assert!(throttle.limited_until() >= a_ends + 900_000_000);
        // A failure counted in a's window again does not move the end back.
        throttle.failure(a);
        let b_ends = throttle.limited_until();
        assert!(b_ends >= a_ends + 900_000_000);
        std::thread::sleep(Duration::from_millis(700));
        assert_eq!(throttle.check(a), None, "a's window ended");
        assert!(throttle.check(b).is_some(), "b's window is still open");
        std::thread::sleep(Duration::from_millis(900));
        assert_eq!(throttle.check(b), None);
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                "x-forwarded-for",
                v.parse().unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ipv6_clients_count_by_their_prefix() {
        let t = AuthThrottle::new(2, Duration::from_secs(10));
        let none = HeaderMap::new();
        let a = t.client(ip("2001:db8:1:2::1"), &none);
        assert_eq!(a, t.client(ip("2001:db8:1:2:ffff::9"), &none));
        assert_ne!(a, t.client(ip("2001:db8:1:3::1"), &none));
        t.failure(a);
        t.failure(t.client(ip("2001:db8:1:2:ffff::9"), &none));
        assert!(t.check(t.client(ip("2001:db8:1:2::77"), &none)).is_some());
        assert!(t.check(t.client(ip("2001:db8:1:3::1"), &none)).is_none());
        // IPv4 (also when mapped into IPv6) is counted per address.
        assert_eq!(t.client(ip("::ffff:10.0.0.1"), &none), ip("10.0.0.1"));
        assert_ne!(
            t.client(ip("10.0.0.1"), &none),
            t.client(ip("10.0.0.2"), &none)
        );
        let exact = AuthThrottle::with_grouping(
            2,
            Duration::from_secs(10),
            Grouping {
                ipv6_prefix: 128,
                ..Grouping::default()
            },
        );
        assert_ne!(
            exact.client(ip("2001:db8::1"), &none),
            exact.client(ip("2001:db8::2"), &none)
        );
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusting = AuthThrottle::with_grouping(
            1,
            Duration::from_secs(10),
            Grouping {
                trusted_proxies: vec!["10.1.0.0/16".parse().unwrap_or_else(|e| panic!("{e}"))],
                ..Grouping::default()
            },
        );
        let proxy = ip("10.1.2.3");
        // Through the proxy: the client it names.
        assert_eq!(
            trusting.client(proxy, &xff(&["192.0.2.7"])),
            ip("192.0.2.7")
        );
        // A client-supplied entry before the real one is not believed.
        assert_eq!(
            trusting.client(proxy, &xff(&["203.0.113.1, 192.0.2.7"])),
            ip("192.0.2.7")
        );
        // Chains of trusted proxies are walked; several header lines are one list.
        assert_eq!(
            trusting.client(proxy, &xff(&["192.0.2.8", "10.1.9.9"])),
            ip("192.0.2.8")
        );
        // Nothing usable: the proxy itself.
        assert_eq!(trusting.client(proxy, &xff(&["junk"])), proxy);
        assert_eq!(trusting.client(proxy, &HeaderMap::new()), proxy);
        // From anyone else the header is ignored, and off by default.
        let other = ip("192.0.2.50");
        assert_eq!(trusting.client(other, &xff(&["192.0.2.7"])), other);
        let default = AuthThrottle::new(1, Duration::from_secs(10));
        assert_eq!(default.client(proxy, &xff(&["192.0.2.7"])), proxy);
        // Two users behind one proxy are throttled apart.
        trusting.failure(trusting.client(proxy, &xff(&["192.0.2.7"])));
        assert!(
            trusting
                .check(trusting.client(proxy, &xff(&["192.0.2.7"])))
                .is_some()
        );
        assert!(
            trusting
                .check(trusting.client(proxy, &xff(&["192.0.2.9"])))
                .is_none()
        );
    }

    #[test]
    fn a_missing_token_is_not_a_failure() {
        let t = AuthThrottle::new(1, Duration::from_secs(10));
        let a = ip("10.0.0.1");
        for _ in 0..10 {
            t.refused(a, Refusal::Missing);
            t.refused(a, Refusal::KeyUnavailable);
        }
        assert_eq!(t.check(a), None);
        t.refused(a, Refusal::BadSignature);
        assert!(t.check(a).is_some());
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

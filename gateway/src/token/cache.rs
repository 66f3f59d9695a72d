//! The per-token target cache: SHA-256 of the token → validated target, so that a token is
//! verified and decrypted once, not on every request. Keys are digests, never raw tokens.
//!
//! Rules (those of the original gateway, plus bounds it lacked):
//! - an entry lives `min(exp − now, max_ttl)` (600 s by default) and is not kept at all when
//!   `min_remaining` (1 s) or less is left;
//! - the entry count is bounded (100 000 by default; least-recently-used entries go first);
//! - concurrent misses on one token share one verification and decryption (single-flight);
//! - refusals that will not change (bad signature, expired, …) are remembered briefly in a
//!   separate, smaller negative cache, so a flood of one bad token costs one verification;
//! - an entry remembers which signing key verified it and is served only while that key is
//!   still configured: removing a key (a rotation's overlap ending, a compromised key pulled)
//!   revokes what it verified at once, at the cost of comparing one key identity per hit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::jws::KeyId;
use super::{Refusal, SigningKey, Target};

/// SHA-256 of a token: the only form in which a token is ever stored.
pub type TokenDigest = [u8; 32];

/// Default longest time an entry lives (the original's 600 s).
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(600);
/// Default: tokens with this long or less to live are not cached (the original's 1 s).
pub const DEFAULT_MIN_REMAINING: Duration = Duration::from_secs(1);
/// Default entry bound: a desktop holds a handful of live tokens; 100 000 entries of ~150 B
/// is ~15 MB at worst.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default negative-cache lifetime: long enough to absorb a flood, short enough that a key
/// rotation or a clock fix is picked up quickly.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Default negative-cache bound.
pub const DEFAULT_NEGATIVE_MAX_ENTRIES: u64 = 10_000;

/// Cache sizes and lifetimes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Longest lifetime of a positive entry.
    pub max_ttl: Duration,
    /// Tokens with this long or less to live are not cached.
    pub min_remaining: Duration,
    /// Positive entry bound.
    pub max_entries: u64,
    /// Lifetime of a remembered refusal; zero disables the negative cache.
    pub negative_ttl: Duration,
    /// Negative entry bound.
    pub negative_max_entries: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_ttl: DEFAULT_MAX_TTL,
            min_remaining: DEFAULT_MIN_REMAINING,
            max_entries: DEFAULT_MAX_ENTRIES,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            negative_max_entries: DEFAULT_NEGATIVE_MAX_ENTRIES,
        }
    }
}

impl CacheConfig {
    /// How long a token expiring at `exp` may be cached at `now` (both Unix seconds);
    /// `None` when it must not be cached.
    pub fn ttl(&self, exp: i64, now: i64) -> Option<Duration> {
        let remaining = u64::try_from(exp.saturating_sub(now)).ok()?;
        let remaining = Duration::from_secs(remaining);
        (remaining > self.min_remaining).then(|| remaining.min(self.max_ttl))
    }
}

/// A cached, validated target and when (Unix seconds) it stops being served.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) target: Target,
    pub(crate) valid_until: i64,
    /// The signing key that verified the token.
    signed_by: KeyId,
    ttl: Duration,
}

impl Entry {
    pub(crate) fn new(target: Target, signed_by: KeyId, now: i64, ttl: Option<Duration>) -> Self {
        let ttl = ttl.unwrap_or(Duration::ZERO);
        let valid_until = now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        Entry {
            target,
            valid_until,
            signed_by,
            ttl,
        }
    }

    /// Whether the entry may answer at `now`: still valid, and the key that verified it still
    /// one of `signing`.
    pub(crate) fn serves(&self, now: i64, signing: &[SigningKey]) -> bool {
        now < self.valid_until && signing.iter().any(|k| k.id() == self.signed_by)
    }
}

struct EntryExpiry;

impl moka::Expiry<TokenDigest, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _: &TokenDigest,
        value: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Both caches.
pub(crate) struct TargetCache {
    pub(crate) positive: moka::future::Cache<TokenDigest, Arc<Entry>>,
    negative: Option<moka::sync::Cache<TokenDigest, Refusal>>,
}

impl std::fmt::Debug for TargetCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetCache")
            .field("entries", &self.positive.entry_count())
            .finish_non_exhaustive()
    }
}

impl TargetCache {
    pub(crate) fn new(config: &CacheConfig, evictions: prometheus::IntCounterVec) -> Self {
        let positive = moka::future::Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(EntryExpiry)
            .eviction_listener(move |_, _, cause| {
                let cause = match cause {
                    moka::notification::RemovalCause::Size => "size",
                    moka::notification::RemovalCause::Expired => "expired",
                    // Invalidations and replacements are ours, not the cache's.
                    _ => return,
                };
                evictions.with_label_values(&[cause]).inc();
            })
            .build();
        let negative = (!config.negative_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.negative_max_entries)
                .time_to_live(config.negative_ttl)
                .build()
        });
        TargetCache { positive, negative }
    }

    /// A cached entry still valid at `now` and verified by one of `signing`.
    pub(crate) async fn get(
        &self,
        digest: &TokenDigest,
        now: i64,
        signing: &[SigningKey],
    ) -> Option<Arc<Entry>> {
        let entry = self.positive.get(digest).await?;
        if entry.serves(now, signing) {
            Some(entry)
        } else {
            self.positive.invalidate(digest).await;
            None
        }
    }

    pub(crate) fn refused(&self, digest: &TokenDigest) -> Option<Refusal> {
        self.negative.as_ref()?.get(digest)
    }

    pub(crate) fn remember_refusal(&self, digest: TokenDigest, refusal: Refusal) {
        if let Some(negative) = &self.negative {
            negative.insert(digest, refusal);
        }
    }

    /// Forgets the refusal of one token.
    pub(crate) fn forget_refusal(&self, digest: &TokenDigest) {
        if let Some(negative) = &self.negative {
            negative.invalidate(digest);
        }
    }

    /// Forgets every remembered refusal (after a key change, a refused token may pass).
    pub(crate) fn forget_refusals(&self) {
        if let Some(negative) = &self.negative {
            negative.invalidate_all();
        }
    }

    /// Current positive entry count (approximate: moka applies writes lazily).
    pub(crate) async fn len(&self) -> u64 {
        self.positive.run_pending_tasks().await;
        self.positive.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_remaining_life_capped_at_max_and_nothing_at_one_second_or_less() {
        let c = CacheConfig::default();
        assert_eq!(c.ttl(1_000 + 420, 1_000), Some(Duration::from_secs(420)));
        assert_eq!(c.ttl(1_000 + 3_600, 1_000), Some(Duration::from_secs(600)));
        assert_eq!(c.ttl(1_000 + 2, 1_000), Some(Duration::from_secs(2)));
        assert_eq!(c.ttl(1_000 + 1, 1_000), None);
        assert_eq!(c.ttl(1_000, 1_000), None);
        assert_eq!(c.ttl(10, 1_000), None);
        assert_eq!(c.ttl(i64::MAX, i64::MIN), Some(Duration::from_secs(600)));
    }

    #[test]
    fn entry_validity_follows_its_ttl() {
        let e = Entry::new(
            Target::Name("a.svc.cluster.local".into()),
            [0; 32],
            100,
            Some(Duration::from_secs(5)),
        );
        assert_eq!(e.valid_until, 105);
        let e = Entry::new(
            Target::Name("a.svc.cluster.local".into()),
            [0; 32],
            100,
            None,
        );
        assert_eq!(e.valid_until, 100);
    }
}

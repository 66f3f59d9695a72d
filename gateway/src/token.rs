//! The token pipeline: extract → verify → decrypt → validate → cache.
//!
//! [`Authenticator::authenticate`] is the whole of it for the proxy: give it the token a
//! route's [`TokenSource`] extracted and the current time, get back the validated desktop
//! [`Target`] or the [`Refusal`] that explains why not. [`check`] is the same pipeline
//! without the cache, for tools (`keys-tool inspect`) and tests.
//!
//! Invariants, each tested:
//! - length is bounded before any parsing;
//! - `alg` must be `RS256` before any key is touched;
//! - the signature is verified before any decryption (so an attacker without the signing key
//!   can never feed chosen ciphertexts to the payload key);
//! - the decrypted bytes are validated as a desktop address before anyone may dial them;
//! - the shared cache holds SHA-256 digests of tokens, never tokens; a connection's
//!   [`TokenMemo`] holds only the last token that connection's client sent itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

pub mod cache;
mod error;
pub mod extract;
pub mod jws;
mod memo;
pub mod payload;
mod rsa_ffi;
pub mod target;

pub use cache::{CacheConfig, TokenDigest};
pub use error::Refusal;
pub use extract::{RequestParts, TokenSource};
pub use jws::{Claims, KeyId, SigningKey};
pub use memo::TokenMemo;
pub use payload::{PayloadKey, PayloadMode, PayloadPadding};
pub use target::{Target, TargetPolicy};

use cache::{Entry, TargetCache};

/// Default bound on a token's length (a 4096-bit pyos token is about 1.5 KiB).
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default clock leeway for `exp`/`nbf`: none, like the original gateway.
pub const DEFAULT_LEEWAY_SECS: u64 = 0;

/// SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> TokenDigest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The first 8 hex digits of the SHA-256 of `bytes`: a token's or key's name in logs.
pub fn fingerprint(bytes: &[u8]) -> String {
    digest_fingerprint(&digest(bytes))
}

/// [`fingerprint`] of a token whose digest is already known.
pub fn digest_fingerprint(digest: &TokenDigest) -> String {
    digest[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys the pipeline uses; swapped whole on reload.
#[derive(Debug, Default)]
pub struct Keys {
    /// Every key a token may be signed with (several during a rotation).
    pub signing: Vec<SigningKey>,
    /// The key that decrypts `hash`; `None` while it cannot be loaded (requests get 503).
    pub payload: Option<PayloadKey>,
}

/// Pipeline settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Longest token accepted, in bytes.
    pub max_token_len: usize,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway: u64,
    /// What a decrypted target may be.
    pub target: TargetPolicy,
    /// Cache sizes and lifetimes.
    pub cache: CacheConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            leeway: DEFAULT_LEEWAY_SECS,
            target: TargetPolicy::default(),
            cache: CacheConfig::default(),
        }
    }
}

/// Counters and timings of the work the pipeline did: the source of the gateway's token
/// metrics (the `metrics` module registers these very collectors).
#[derive(Debug, Clone)]
pub struct AuthStats {
    /// Signature verifications attempted (one per token, whatever the number of keys).
    pub verifications: IntCounter,
    /// `hash` decryptions attempted.
    pub decryptions: IntCounter,
    /// Throw-away decryptions that warmed a payload key when it was loaded.
    pub warmups: IntCounter,
    /// Requests answered from the positive cache.
    pub cache_hits: IntCounter,
    /// Requests that went through the pipeline (or waited on a concurrent one).
    pub cache_misses: IntCounter,
    /// Requests refused from the negative cache.
    pub negative_hits: IntCounter,
    /// Requests answered from their connection's memo (counted in `cache_hits` too).
    pub memo_hits: IntCounter,
    /// Positive cache entries removed by the cache itself, by cause (`size`, `expired`).
    pub evictions: IntCounterVec,
    /// Requests by token outcome: `accepted`, `cache_hit`, or a [`Refusal::reason`].
    pub outcomes: IntCounterVec,
    /// Time spent verifying signatures.
    pub verify_seconds: Histogram,
    /// Time spent decrypting `hash` claims.
    pub decrypt_seconds: Histogram,
    /// `outcomes{outcome="cache_hit"}`, looked up once: most requests count there.
    hit_outcome: IntCounter,
}

/// Buckets for crypto timings: 2 µs (a 1024-bit verify) to 20 ms (a loaded 4096-bit decrypt).
const CRYPTO_BUCKETS: &[f64] = &[
    2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 2e-2,
];

impl Default for AuthStats {
    fn default() -> Self {
        // Fixed names and help texts: construction cannot fail.
        let counter = |name: &str, help: &str| {
            IntCounter::new(name, help).unwrap_or_else(|_| unreachable!("valid metric name"))
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            IntCounterVec::new(Opts::new(name, help), &[label])
                .unwrap_or_else(|_| unreachable!("valid metric name"))
        };
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(CRYPTO_BUCKETS.to_vec()))
                .unwrap_or_else(|_| unreachable!("valid metric name"))
        };
        let outcomes = counter_vec(
            "gateway_token_outcomes_total",
            "Token outcomes: accepted, cache_hit or a refusal reason.",
            "outcome",
        );
        AuthStats {
            hit_outcome: outcomes.with_label_values(&["cache_hit"]),
            outcomes,
            verifications: counter(
                "gateway_token_verifications_total",
                "Token signature verifications performed.",
            ),
            decryptions: counter(
                "gateway_token_decryptions_total",
                "hash claim decryptions performed.",
            ),
            warmups: counter(
                "gateway_token_key_warmups_total",
                "Throw-away payload-key decryptions done when a payload key is loaded.",
            ),
            cache_hits: counter(
                "gateway_token_cache_hits_total",
                "Requests whose token target came from the cache.",
            ),
            cache_misses: counter(
                "gateway_token_cache_misses_total",
                "Requests whose token went through the pipeline.",
            ),
            negative_hits: counter(
                "gateway_token_negative_cache_hits_total",
                "Requests refused from the negative cache.",
            ),
            memo_hits: counter(
                "gateway_token_memo_hits_total",
                "Cache hits answered from the connection's memo of its last accepted token.",
            ),
            evictions: counter_vec(
                "gateway_token_cache_evictions_total",
                "Cache entries removed by the cache (size bound or expiry).",
                "cause",
            ),
            verify_seconds: histogram(
                "gateway_token_verify_seconds",
                "Time to verify a token signature.",
            ),
            decrypt_seconds: histogram(
                "gateway_token_decrypt_seconds",
                "Time to decrypt a hash claim.",
            ),
        }
    }
}

impl AuthStats {
    /// Reads a counter.
    pub fn get(counter: &IntCounter) -> u64 {
        counter.get()
    }

    /// Every collector, for registration in a Prometheus registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.verifications.clone()),
            Box::new(self.decryptions.clone()),
            Box::new(self.warmups.clone()),
            Box::new(self.cache_hits.clone()),
            Box::new(self.cache_misses.clone()),
            Box::new(self.negative_hits.clone()),
            Box::new(self.memo_hits.clone()),
            Box::new(self.evictions.clone()),
            Box::new(self.outcomes.clone()),
            Box::new(self.verify_seconds.clone()),
            Box::new(self.decrypt_seconds.clone()),
        ]
    }

    fn outcome(&self, outcome: &str) {
        self.outcomes.with_label_values(&[outcome]).inc();
    }

    /// One request answered from the cache or a connection's memo.
    fn hit(&self) {
        self.cache_hits.inc();
        self.hit_outcome.inc();
    }
}

/// What [`check`] learned about a token that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The verified claims.
    pub claims: Claims,
    /// The validated desktop address.
    pub target: Target,
    /// The signing key that verified it.
    pub signed_by: KeyId,
}

/// The uncached pipeline: bound, shape, algorithm, signature, claims, decryption, target.
pub fn check(
    token: &str,
    keys: &Keys,
    config: &AuthConfig,
    now: i64,
    stats: &AuthStats,
) -> Result<Checked, Refusal> {
    if token.is_empty() {
        return Err(Refusal::Missing);
    }
    if token.len() > config.max_token_len {
        return Err(Refusal::TooLong);
    }
    let segments = jws::split(token)?;
    jws::check_header(&segments)?;
    stats.verifications.inc();
    let started = Instant::now();
    let verified = jws::check_signature(&segments, &keys.signing);
    stats
        .verify_seconds
        .observe(started.elapsed().as_secs_f64());
    let signed_by = verified?;
    let claims = jws::check_claims(&segments, now, config.leeway)?;
    // Only now, with the signature verified, may the ciphertext reach the payload key.
    let payload = keys.payload.as_ref().ok_or(Refusal::KeyUnavailable)?;
    stats.decryptions.inc();
    let started = Instant::now();
    let plaintext = payload.decrypt(&claims.hash);
    stats
        .decrypt_seconds
        .observe(started.elapsed().as_secs_f64());
    let plaintext = plaintext?;
    let target = config.target.validate(&plaintext)?;
    Ok(Checked {
        claims,
        target,
        signed_by,
    })
}

/// The cached pipeline the proxy calls on every authenticated request.
pub struct Authenticator {
    config: AuthConfig,
    keys: ArcSwap<Keys>,
    /// Bumped after every key change; a refusal computed under an older value is neither
    /// remembered nor handed to a request that arrived after the change.
    generation: AtomicU64,
    cache: TargetCache,
    stats: AuthStats,
}

/// A refusal and the key generation it was computed under.
#[derive(Clone, Copy)]
struct Computed {
    refusal: Refusal,
    generation: u64,
}

/// Attempts of one request when the refusal it got came from keys replaced meanwhile.
const STALE_RETRIES: usize = 3;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("config", &self.config)
            .field("keys", &self.keys.load())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// A pipeline with empty caches; the payload key is warmed up before this returns.
    pub fn new(config: AuthConfig, keys: Keys) -> Self {
        let stats = AuthStats::default();
        let cache = TargetCache::new(&config.cache, stats.evictions.clone());
        let auth = Authenticator {
            config,
            keys: ArcSwap::from_pointee(Keys::default()),
            generation: AtomicU64::new(0),
            cache,
            stats,
        };
        auth.warm_up(&keys);
        auth.keys.store(Arc::new(keys));
        auth
    }

    /// Installs new keys atomically, a new payload key warmed up first; requests in flight
    /// finish with the keys they started with. Cached targets verified by a signing key that is
    /// gone are no longer served; remembered refusals are forgotten (a token refused under the
    /// old keys may pass), including those of verifications still running on the old keys.
    pub fn replace_keys(&self, mut keys: Keys) {
        let current = self.keys.load_full();
        match (&current.payload, &mut keys.payload) {
            // The same key read again: keep the warm copy already in use.
            (Some(old), Some(new)) if old.same_key(new) => *new = old.clone(),
            _ => self.warm_up(&keys),
        }
        // Order matters: keys, then generation, then the negative cache (see `refuse`).
        self.keys.store(Arc::new(keys));
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.forget_refusals();
    }

    /// One throw-away decryption with the payload key (counted in `warmups`).
    fn warm_up(&self, keys: &Keys) {
        if let Some(payload) = &keys.payload {
            self.stats.warmups.inc();
            payload.warm_up();
        }
    }

    /// The keys in use.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.load_full()
    }

    /// The settings in use.
    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Work counters.
    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// Counts a refusal that happened before the pipeline was reached (e.g. a route that found
    /// no token at all), so that every refusal shows in the outcome metric.
    pub fn record_refusal(&self, refusal: Refusal) {
        self.stats.outcome(refusal.reason());
    }

    /// Number of cached targets (settles pending cache maintenance first).
    pub async fn cached_entries(&self) -> u64 {
        self.cache.len().await
    }

    /// The desktop `token` leads to, at `now` (Unix seconds).
    pub async fn authenticate(&self, token: &str, now: i64) -> Result<Target, Refusal> {
        self.authenticate_with_digest(token, now).await.0
    }

    /// [`Authenticator::authenticate`], also handing back the token's SHA-256 (computed for the
    /// cache lookup anyway) so that callers can log its [`digest_fingerprint`] without hashing
    /// the token again. `None` when the token was refused before it was hashed (empty, too long).
    pub async fn authenticate_with_digest(
        &self,
        token: &str,
        now: i64,
    ) -> (Result<Target, Refusal>, Option<TokenDigest>) {
        self.authenticate_remembering(None, token, now).await
    }

    /// [`Authenticator::authenticate_with_digest`] for a request on a client connection that
    /// remembers its last accepted token in `memo`: the same token again, while the shared
    /// cache would still serve it, is answered without hashing it or looking it up.
    pub async fn authenticate_on(
        &self,
        memo: &TokenMemo,
        token: &str,
        now: i64,
    ) -> (Result<Target, Refusal>, Option<TokenDigest>) {
        self.authenticate_remembering(Some(memo), token, now).await
    }

    async fn authenticate_remembering(
        &self,
        memo: Option<&TokenMemo>,
        token: &str,
        now: i64,
    ) -> (Result<Target, Refusal>, Option<TokenDigest>) {
        let recalled =
            memo.and_then(|m| m.recall(token.as_bytes(), now, &self.keys.load().signing));
        if let Some((target, digest)) = recalled {
            self.stats.hit();
            self.stats.memo_hits.inc();
            return (Ok(target), Some(digest));
        }
        let early = if token.is_empty() {
            Some(Refusal::Missing)
        } else if token.len() > self.config.max_token_len {
            Some(Refusal::TooLong)
        } else {
            None
        };
        if let Some(refusal) = early {
            self.stats.outcome(refusal.reason());
            return (Err(refusal), None);
        }
        let digest = digest(token.as_bytes());
        let entry = self.authenticate_digest(token, digest, now).await;
        if let (Some(memo), Ok(entry)) = (memo, &entry) {
            memo.remember(token.as_bytes(), digest, Arc::clone(entry));
        }
        (entry.map(|entry| entry.target.clone()), Some(digest))
    }

    async fn authenticate_digest(
        &self,
        token: &str,
        digest: TokenDigest,
        now: i64,
    ) -> Result<Arc<Entry>, Refusal> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Generation before keys: a refusal labelled with a generation was computed with
            // those keys or newer ones (`replace_keys` stores the keys first).
            let generation = self.generation.load(Ordering::SeqCst);
            let keys = self.keys.load_full();
            if let Some(entry) = self.cache.get(&digest, now, &keys.signing).await {
                self.stats.hit();
                return Ok(entry);
            }
            if let Some(refusal) = self.cache.refused(&digest) {
                self.stats.negative_hits.inc();
                self.stats.outcome(refusal.reason());
                return Err(refusal);
            }
            if attempt == 1 {
                self.stats.cache_misses.inc();
            }
            // Concurrent misses on one digest wait for this one computation (moka
            // single-flight); its refusal, if any, is handed to every waiter without being
            // cached there. A permanent refusal enters the negative cache before the
            // computation ends, so no request arriving after it finds neither and verifies the
            // same token again.
            // Boxed: the verification's state stays out of every request's future (a cache
            // hit, the common case, never builds it).
            let computed = Box::pin(self.cache.positive.try_get_with(digest, async {
                let refuse = |refusal: Refusal| {
                    if refusal.is_permanent() {
                        self.refuse(digest, refusal, generation);
                    }
                    Computed {
                        refusal,
                        generation,
                    }
                };
                // A computation that ended just before this one started has left its
                // refusal here (a request can miss both caches, then arrive after it).
                if let Some(refusal) = self.cache.refused(&digest) {
                    self.stats.negative_hits.inc();
                    return Err(Computed {
                        refusal,
                        generation,
                    });
                }
                let checked =
                    check(token, &keys, &self.config, now, &self.stats).map_err(refuse)?;
                let ttl = self.config.cache.ttl(checked.claims.exp, now);
                let entry = Entry::new(checked.target, checked.signed_by, now, ttl);
                Ok::<_, Computed>(Arc::new(entry))
            }))
            .await;
            let computed = match computed {
                Ok(entry) => {
                    self.stats.outcome("accepted");
                    return Ok(entry);
                }
                Err(computed) => *computed,
            };
            // Keys changed since that computation started: it may have refused what the new
            // keys accept, so it is not this request's answer.
            if computed.generation != self.generation.load(Ordering::SeqCst)
                && attempt < STALE_RETRIES
            {
                continue;
            }
            let refusal = computed.refusal;
            self.stats.outcome(refusal.reason());
            return Err(refusal);
        }
    }

    /// Remembers a refusal computed under key `generation`, unless the keys changed since:
    /// `replace_keys` bumps the generation before it clears the negative cache, so either the
    /// clearing comes after this insert, or the generation read after it has moved.
    fn refuse(&self, digest: TokenDigest, refusal: Refusal, generation: u64) {
        self.cache.remember_refusal(digest, refusal);
        if self.generation.load(Ordering::SeqCst) != generation {
            self.cache.forget_refusal(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_tooling::keygen::{PAIRS, generate_pair};
    use gateway_tooling::mint::{MintMode, Minter};

    /// An authenticator over fresh 1024-bit keys that accepts loopback targets, and a minter
    /// for its tokens.
    fn setup() -> (
        Authenticator,
        Minter,
        gateway_tooling::keygen::GeneratedPair,
    ) {
        let payload = generate_pair(PAIRS[0], 1024).unwrap();
        let signing = generate_pair(PAIRS[1], 1024).unwrap();
        let keys = Keys {
            signing: vec![SigningKey::from_pem(&signing.public_pem).unwrap()],
            payload: Some(
                PayloadKey::from_pem(&payload.private_pem, PayloadPadding::Pkcs1).unwrap(),
            ),
        };
        let config = AuthConfig {
            target: TargetPolicy {
                allow_loopback: true,
                ..TargetPolicy::default()
            },
            ..AuthConfig::default()
        };
        let minter =
            Minter::from_pem(&signing.private_pem, &payload.public_pem, MintMode::Pkcs1).unwrap();
        (Authenticator::new(config, keys), minter, payload)
    }

    #[tokio::test]
    async fn a_connection_s_memo_answers_its_token_again_without_the_shared_cache() {
        let (auth, minter, _) = setup();
        let memo = TokenMemo::default();
        let now = 1_800_000_000;
        let token = minter.mint("10.0.0.1", now, 420).unwrap();
        let (first, digest1) = auth.authenticate_on(&memo, &token, now).await;
        assert_eq!(first, Ok(Target::Ip([10, 0, 0, 1].into())));
        // Emptied, the shared cache cannot answer: only the memo can, with the same digest.
        auth.cache.positive.invalidate_all();
        auth.cache.positive.run_pending_tasks().await;
        let (again, digest2) = auth.authenticate_on(&memo, &token, now + 1).await;
        assert_eq!(again, first);
        assert_eq!(digest2, digest1);
        assert_eq!(auth.stats.verifications.get(), 1);
        assert_eq!(auth.stats.cache_hits.get(), 1);
        assert_eq!(auth.stats.memo_hits.get(), 1);
        // Another token on the same connection goes through the pipeline and takes the memo's
        // place; the first is then verified again.
        let other = minter.mint("10.0.0.2", now, 420).unwrap();
        let (second, _) = auth.authenticate_on(&memo, &other, now).await;
        assert_eq!(second, Ok(Target::Ip([10, 0, 0, 2].into())));
        assert_eq!(auth.stats.verifications.get(), 2);
        auth.cache.positive.invalidate_all();
        auth.cache.positive.run_pending_tasks().await;
        assert_eq!(auth.authenticate_on(&memo, &token, now).await.0, first);
        assert_eq!(auth.stats.verifications.get(), 3);
        // A different memo (another connection) does not share it.
        let (_, _) = auth
            .authenticate_on(&TokenMemo::default(), &token, now)
            .await;
        assert_eq!(auth.stats.cache_hits.get(), 2, "from the shared cache");
        assert_eq!(auth.stats.memo_hits.get(), 1);
    }

    #[tokio::test]
    async fn a_memo_serves_no_longer_than_the_shared_cache_would() {
        let (auth, minter, _) = setup();
        let memo = TokenMemo::default();
        let now = 1_800_000_000;
        // Valid for 30 s: cached (and remembered) for 30 s, then refused as expired.
        let token = minter.mint("10.0.0.1", now, 30).unwrap();
        assert!(auth.authenticate_on(&memo, &token, now).await.0.is_ok());
        assert!(
            auth.authenticate_on(&memo, &token, now + 29)
                .await
                .0
                .is_ok()
        );
        assert_eq!(auth.stats.verifications.get(), 1);
        assert_eq!(
            auth.authenticate_on(&memo, &token, now + 31).await.0,
            Err(Refusal::Expired)
        );
        // A token with a second or less to live is never cached, so never remembered.
        let short = minter.mint("10.0.0.1", now, 1).unwrap();
        assert!(auth.authenticate_on(&memo, &short, now).await.0.is_ok());
        assert!(auth.authenticate_on(&memo, &short, now).await.0.is_ok());
        assert_eq!(auth.stats.verifications.get(), 4);
        // A refusal is not remembered: the same forged token is refused every time.
        let forged = format!("{}x", &token[..token.len() - 1]);
        for _ in 0..2 {
            assert!(auth.authenticate_on(&memo, &forged, now).await.0.is_err());
        }
    }

    #[tokio::test]
    async fn removing_the_signing_key_revokes_what_a_memo_holds() {
        let (auth, minter, payload) = setup();
        let memo = TokenMemo::default();
        let now = 1_800_000_000;
        let token = minter.mint("10.0.0.1", now, 420).unwrap();
        assert!(auth.authenticate_on(&memo, &token, now).await.0.is_ok());
        let other = generate_pair(PAIRS[1], 1024).unwrap();
        auth.replace_keys(Keys {
            signing: vec![SigningKey::from_pem(&other.public_pem).unwrap()],
            payload: Some(
                PayloadKey::from_pem(&payload.private_pem, PayloadPadding::Pkcs1).unwrap(),
            ),
        });
        assert_eq!(
            auth.authenticate_on(&memo, &token, now).await.0,
            Err(Refusal::BadSignature)
        );
    }

    #[tokio::test]
    async fn cache_keys_are_digests_never_tokens() {
        let (auth, minter, _) = setup();
        let now = 1_800_000_000;
        let token = minter.mint("10.0.0.1", now, 420).unwrap();
        auth.authenticate(&token, now).await.unwrap();
        auth.cache.positive.run_pending_tasks().await;
        let stored: Vec<TokenDigest> = auth.cache.positive.iter().map(|(k, _)| *k).collect();
        assert_eq!(stored, vec![digest(token.as_bytes())]);
        // Nothing that is kept prints any part of the token.
        let memo = TokenMemo::default();
        auth.authenticate_on(&memo, &token, now).await.0.unwrap();
        let shown = format!(
            "{auth:?} {:?} {memo:?}",
            auth.cache.positive.iter().collect::<Vec<_>>()
        );
        for piece in token.split('.') {
            assert!(!shown.contains(&piece[..16]), "{shown}");
        }
    }

    #[test]
    fn fingerprint_is_eight_hex_digits_of_sha256() {
        // SHA-256("abc") = ba7816bf…
        assert_eq!(fingerprint(b"abc"), "ba7816bf");
    }
}

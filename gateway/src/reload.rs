//! Key hot reload: the signing and payload key files are re-read while the gateway runs, and a
//! changed key set is swapped in atomically ([`Authenticator::replace_keys`]).
//!
//! Kubernetes updates a mounted Secret by writing a new hidden directory and swapping the
//! `..data` symlink; the key files are links through it. Rather than tracking inotify events
//! across that swap, the reloader re-reads the (small) key files every `interval` and compares
//! their SHA-256: the same result with no dependency and no missed event, whether the files
//! are replaced by a symlink swap, a rename or an in-place write.
//!
//! Rules:
//! - a key file that is missing or does not parse keeps the key loaded before it (and counts a
//!   failure); the gateway never drops to "no key" because of a bad update;
//! - after a signing-key rotation the previous key stays accepted for `overlap` (10 minutes by
//!   default), so tokens pyos signed just before the rotation keep working;
//! - a payload key that was unavailable at start (503s) is picked up as soon as it appears.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::keys::{FileDigest, WARN_BELOW_BITS};
use crate::token::{Authenticator, Keys, PayloadKey, PayloadPadding, SigningKey};

/// Default time a replaced signing key stays accepted.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(600);
/// Default interval between two reads of the key files (the kubelet itself updates Secret
/// volumes only every minute or so; 2 s keeps the added delay negligible).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySources {
    /// Signing public key files; every one that loads is accepted.
    pub signing: Vec<PathBuf>,
    /// The payload key file.
    pub payload: PathBuf,
    /// Padding for a payload private key.
    pub padding: PayloadPadding,
}

/// Counters for the reload metrics (registered by the `metrics` module).
#[derive(Debug, Clone)]
pub struct ReloadStats {
    /// Key sets installed after a change on disk.
    pub successes: IntCounter,
    /// Reads that found a missing or unusable key file (the old key was kept).
    pub failures: IntCounter,
    /// Size in bits of the keys in use, by `key` (`signing`, `payload`).
    pub key_bits: IntGaugeVec,
    /// The family both counters belong to, `gateway_key_reloads_total{result}`.
    reloads: IntCounterVec,
}

impl Default for ReloadStats {
    fn default() -> Self {
        let reloads = IntCounterVec::new(
            Opts::new("gateway_key_reloads_total", "Key file reloads by result."),
            &["result"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        let key_bits = IntGaugeVec::new(
            Opts::new(
                "gateway_key_bits",
                "Size of the keys in use (largest signing key).",
            ),
            &["key"],
        )
        .unwrap_or_else(|_| unreachable!("valid metric name"));
        ReloadStats {
            successes: reloads.with_label_values(&["success"]),
            failures: reloads.with_label_values(&["failure"]),
            key_bits,
            reloads,
        }
    }
}

impl ReloadStats {
    /// Every collector, for registration in a Prometheus registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.key_bits.clone()),
            Box::new(self.reloads.clone()),
        ]
    }

    fn record_keys(&self, keys: &Keys) {
        let signing = keys.signing.iter().map(|k| k.bits()).max().unwrap_or(0);
        let payload = keys.payload.as_ref().map_or(0, |k| k.bits());
        self.key_bits
            .with_label_values(&["signing"])
            .set(i64::try_from(signing).unwrap_or(0));
        self.key_bits
            .with_label_values(&["payload"])
            .set(i64::try_from(payload).unwrap_or(0));
    }
}

/// A key as last read from disk: the digest of the file's bytes and the key parsed from them
/// (the file's text itself is wiped as soon as it is parsed).
#[derive(Clone)]
struct Loaded<K> {
    digest: FileDigest,
    key: K,
}

/// A signing key no longer on disk but still accepted until `until`.
#[derive(Clone)]
struct Retiring {
    key: Loaded<SigningKey>,
    until: Instant,
}

/// The reloader's view of the key files. `Debug` is written by hand: it names keys by
/// fingerprint and size only.
#[derive(Default)]
struct State {
    signing: Vec<Option<Loaded<SigningKey>>>,
    /// Per signing file: whether its last read failed (to log when it recovers).
    signing_failing: Vec<bool>,
    retiring: Vec<Retiring>,
    payload: Option<Loaded<PayloadKey>>,
    payload_failing: bool,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let signing: Vec<Option<&SigningKey>> = self
            .signing
            .iter()
            .map(|l| l.as_ref().map(|l| &l.key))
            .collect();
        let retiring: Vec<&SigningKey> = self.retiring.iter().map(|r| &r.key.key).collect();
        f.debug_struct("State")
            .field("signing", &signing)
            .field("retiring", &retiring)
            .field("payload", &self.payload.as_ref().map(|l| &l.key))
            .finish_non_exhaustive()
    }
}

/// What one [`KeyReloader::reload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed on disk and no retired key expired.
    Unchanged,
    /// A new key set was installed.
    Installed,
    /// Some file could not be used; what could be used was installed, the rest kept.
    Failed,
}

/// Re-reads the key files and keeps the authenticator's keys current.
#[derive(Debug)]
pub struct KeyReloader {
    sources: KeySources,
    overlap: Duration,
    authenticator: Arc<Authenticator>,
    state: std::sync::Mutex<State>,
    stats: ReloadStats,
}

/// The bytes of a key file, wiped when dropped, and their digest.
fn read(path: &std::path::Path) -> Result<(Zeroizing<Vec<u8>>, FileDigest), String> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?);
    let digest = FileDigest::of(&bytes);
    Ok((bytes, digest))
}

/// The text of a key file read by [`read`].
fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "not a PEM file (not text)".to_owned())
}

/// Logs, once per newly loaded key, that it is below the recommended size.
fn warn_if_small(path: &std::path::Path, kind: &str, bits: usize) {
    if bits < WARN_BELOW_BITS {
        tracing::warn!(
            path = %path.display(),
            key = kind,
            bits,
            "RSA key below 2048 bits accepted (abcdesktop's legacy default); make new keys with `keys-tool gen`"
        );
    }
}

impl KeyReloader {
    /// A reloader for `sources` reporting to `stats`; call [`KeyReloader::reload`] (or
    /// [`KeyReloader::run`]) to load.
    pub fn new(
        sources: KeySources,
        overlap: Duration,
        authenticator: Arc<Authenticator>,
        stats: ReloadStats,
    ) -> Self {
        let state = State {
            signing: vec![None; sources.signing.len()],
            signing_failing: vec![false; sources.signing.len()],
            ..State::default()
        };
        KeyReloader {
            sources,
            overlap,
            authenticator,
            state: std::sync::Mutex::new(state),
            stats,
        }
    }

    /// Reload counters.
    pub fn stats(&self) -> &ReloadStats {
        &self.stats
    }

    /// Reads every key file once and installs a new key set if anything changed.
    pub fn reload(&self) -> ReloadOutcome {
        let now = Instant::now();
        // A poisoned lock only means an earlier reload panicked between reads; the state is
        // still a consistent "last good" snapshot.
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let state = &mut *guard;
        let mut changed = false;
        let mut failed = false;

        for ((slot, failing), path) in state
            .signing
            .iter_mut()
            .zip(state.signing_failing.iter_mut())
            .zip(&self.sources.signing)
        {
            // Parse only what changed: unchanged bytes were parsed when they were read.
            let fresh = read(path).and_then(|(bytes, digest)| {
                if slot.as_ref().is_some_and(|l| l.digest == digest) {
                    return Ok(None);
                }
                let key = SigningKey::from_pem(text(&bytes)?).map_err(|e| e.to_string())?;
                Ok(Some(Loaded { digest, key }))
            });
            match fresh {
                Ok(fresh) => {
                    if std::mem::take(failing) {
                        tracing::info!(path = %path.display(), "signing key file usable again");
                    }
                    let Some(fresh) = fresh else { continue };
                    warn_if_small(path, "signing", fresh.key.bits());
                    if let Some(old) = slot.take() {
                        tracing::info!(path = %path.display(), overlap_s = self.overlap.as_secs(), "signing key rotated; previous key accepted during the overlap");
                        retire(&mut state.retiring, old, now + self.overlap);
                    }
                    *slot = Some(fresh);
                    changed = true;
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, kept_previous = slot.is_some(), "signing key file unusable");
                    *failing = true;
                    failed = true;
                }
            }
        }

        let path = &self.sources.payload;
        let payload = read(path).and_then(|(bytes, digest)| {
            if state.payload.as_ref().is_some_and(|l| l.digest == digest) {
                return Ok(None);
            }
            let key = PayloadKey::from_pem(text(&bytes)?, self.sources.padding)
                .map_err(|e| e.to_string())?;
            Ok(Some(Loaded { digest, key }))
        });
        match payload {
            Ok(fresh) => {
                if std::mem::take(&mut state.payload_failing) {
                    tracing::info!(path = %path.display(), "payload key file usable again");
                }
                if let Some(fresh) = fresh {
                    warn_if_small(path, "payload", fresh.key.bits());
                    state.payload = Some(fresh);
                    changed = true;
                }
            }
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, kept_previous = state.payload.is_some(), "payload key file unusable");
                state.payload_failing = true;
                failed = true;
            }
        }

        let before = state.retiring.len();
        state.retiring.retain(|r| r.until > now);
        changed |= state.retiring.len() != before;

        if changed {
            let keys = build_keys(state);
            self.stats.record_keys(&keys);
            // The first read at start usually finds the keys the gateway started with: keep
            // them (and their warm payload key) rather than install equal ones.
            if !same_keys(&keys, &self.authenticator.keys()) {
                self.authenticator.replace_keys(keys);
            }
        }
        if failed {
            self.stats.failures.inc();
            ReloadOutcome::Failed
        } else if changed {
            self.stats.successes.inc();
            ReloadOutcome::Installed
        } else {
            ReloadOutcome::Unchanged
        }
    }
}

/// What the gateway re-reads from files while it runs: the key files ([`KeyReloader`]) and
/// the TLS certificate ([`crate::tls::TlsState`]). Both go through [`run`], the one reload
/// loop.
pub trait Reloadable: Send + Sync + 'static {
    /// Reads the files once and installs what changed.
    fn reload(&self) -> ReloadOutcome;
}

impl Reloadable for KeyReloader {
    fn reload(&self) -> ReloadOutcome {
        KeyReloader::reload(self)
    }
}

/// Reloads each of `sources`, in turn, every `interval` until `shutdown` completes. File
/// reads and key parsing are blocking work: they run on tokio's blocking pool.
pub async fn run(
    sources: Vec<Arc<dyn Reloadable>>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {
                for source in &sources {
                    let source = source.clone();
                    if tokio::task::spawn_blocking(move || source.reload()).await.is_err() {
                        tracing::error!("reload task panicked");
                    }
                }
            }
        }
    }
}

fn retire(retiring: &mut Vec<Retiring>, key: Loaded<SigningKey>, until: Instant) {
    retiring.retain(|r| r.key.digest != key.digest);
    retiring.push(Retiring { key, until });
}

/// The key set for `state`: current signing keys, then the retiring ones, then the payload key.
fn build_keys(state: &State) -> Keys {
    let signing = state
        .signing
        .iter()
        .flatten()
        .chain(state.retiring.iter().map(|r| &r.key))
        .map(|l| l.key.clone())
        .collect();
    let payload = state.payload.as_ref().map(|l| l.key.clone());
    Keys { signing, payload }
}

/// Whether `a` and `b` hold the same signing keys (as a set) and the same payload key.
fn same_keys(a: &Keys, b: &Keys) -> bool {
    let ids = |k: &Keys| {
        let mut ids: Vec<_> = k.signing.iter().map(SigningKey::id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let payload_same = match (&a.payload, &b.payload) {
        (Some(x), Some(y)) => x.same_key(y),
        (None, None) => true,
        _ => false,
    };
    payload_same && ids(a) == ids(b)
}

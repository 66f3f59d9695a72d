//! Key hot reload on a directory laid out the way the kubelet lays out a Secret volume
//! (`..<timestamp>/` holding the files, `..data` → that directory, each file a link through
//! `..data`), updated the way the kubelet updates it (new directory, atomic `..data` swap).

use crate::token_support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway::token::{Authenticator, Keys, PayloadPadding, Refusal, Target};
use gateway::{KeyReloader, KeySources, ReloadOutcome, ReloadStats};
use gateway_tooling::mint::MintMode;
use token_support::*;

/// A Secret volume at `root`.
struct SecretVolume {
    root: PathBuf,
    generation: u32,
}

impl SecretVolume {
    fn new(root: &Path, files: &[(&str, String)]) -> SecretVolume {
        std::fs::create_dir_all(root).unwrap();
        let mut volume = SecretVolume {
            root: root.to_owned(),
            generation: 0,
        };
        volume.update(files);
        for (name, _) in files {
            symlink(Path::new("..data").join(name), root.join(name)).unwrap();
        }
        volume
    }

    /// Writes a new generation and swaps `..data` to it atomically, as the kubelet does.
    fn update(&mut self, files: &[(&str, String)]) {
        self.generation += 1;
        let dir_name = format!(
            "..2026_11_24_00_00_{:02}.{}",
            self.generation, self.generation
        );
        let dir = self.root.join(&dir_name);
        std::fs::create_dir(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        let tmp = self.root.join("..data_tmp");
        symlink(&dir_name, &tmp).unwrap();
        std::fs::rename(&tmp, self.root.join("..data")).unwrap();
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    signing: SecretVolume,
    payload: SecretVolume,
    auth: Arc<Authenticator>,
    reloader: KeyReloader,
}

fn setup(keys: &KeyDir, overlap: Duration) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let signing = SecretVolume::new(
        &tmp.path().join("config.signing"),
        &[(SIGNING_PUBLIC, keys.read(SIGNING_PUBLIC))],
    );
    let payload = SecretVolume::new(
        &tmp.path().join("config.payload"),
        &[(PAYLOAD_PRIVATE, keys.read(PAYLOAD_PRIVATE))],
    );
    let auth = Arc::new(Authenticator::new(test_config(), Keys::default()));
    let sources = KeySources {
        signing: vec![signing.root.join(SIGNING_PUBLIC)],
        payload: payload.root.join(PAYLOAD_PRIVATE),
        padding: PayloadPadding::Pkcs1,
    };
    let reloader = KeyReloader::new(sources, overlap, auth.clone(), ReloadStats::default());
    Setup {
        _tmp: tmp,
        signing,
        payload,
        auth,
        reloader,
    }
}

fn fresh(keys: &KeyDir, target: &str) -> String {
    keys.minter(MintMode::Pkcs1)
        .mint(target, now(), 420)
        .unwrap()
}

fn ip(s: &str) -> Target {
    Target::Ip(s.parse().unwrap())
}

#[tokio::test]
async fn first_reload_installs_the_keys_and_a_second_changes_nothing() {
    let a = KeyDir::keygen(1024);
    let s = setup(&a, Duration::from_secs(600));
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.1"), now()).await,
        Err(Refusal::BadSignature)
    );
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.1"), now()).await,
        Ok(ip("10.0.0.1"))
    );
    assert_eq!(s.reloader.reload(), ReloadOutcome::Unchanged);
    assert_eq!(s.reloader.stats().successes.get(), 1);
}

#[tokio::test]
async fn rotated_signing_key_overlaps_with_the_previous_one_then_replaces_it() {
    let a = KeyDir::keygen(1024);
    let b = KeyDir::keygen(1024);
    // Only the signing Secret rotates: b signs, a's payload key stays.
    let mut s = setup(&a, Duration::from_millis(300));
    s.reloader.reload();
    s.signing
        .update(&[(SIGNING_PUBLIC, b.read(SIGNING_PUBLIC))]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    let by_b = gateway_tooling::mint::Minter::from_pem(
        &b.read(SIGNING_PRIVATE),
        &a.read(PAYLOAD_PUBLIC),
        MintMode::Pkcs1,
    )
    .unwrap();
    assert_eq!(
        s.auth
            .authenticate(&by_b.mint("10.0.0.2", now(), 420).unwrap(), now())
            .await,
        Ok(ip("10.0.0.2"))
    );
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.3"), now()).await,
        Ok(ip("10.0.0.3")),
        "old key during the overlap"
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        s.reloader.reload(),
        ReloadOutcome::Installed,
        "the retired key leaves"
    );
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.4"), now()).await,
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        s.auth
            .authenticate(&by_b.mint("10.0.0.5", now(), 420).unwrap(), now())
            .await,
        Ok(ip("10.0.0.5"))
    );
}

#[tokio::test]
async fn corrupt_or_missing_new_keys_keep_the_old_ones_and_count_a_failure() {
    let a = KeyDir::keygen(1024);
    let mut s = setup(&a, Duration::from_secs(600));
    s.reloader.reload();
    s.payload.update(&[(
        PAYLOAD_PRIVATE,
        "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n".into(),
    )]);
    s.signing.update(&[(SIGNING_PUBLIC, "not a key".into())]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Failed);
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.6"), now()).await,
        Ok(ip("10.0.0.6"))
    );
    // Files gone entirely (a Secret emptied): still the old keys.
    s.signing.update(&[]);
    s.payload.update(&[]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Failed);
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.7"), now()).await,
        Ok(ip("10.0.0.7"))
    );
    assert_eq!(s.reloader.stats().failures.get(), 2);
    // Good files again: back to normal, without a failure.
    s.signing
        .update(&[(SIGNING_PUBLIC, a.read(SIGNING_PUBLIC))]);
    s.payload
        .update(&[(PAYLOAD_PRIVATE, a.read(PAYLOAD_PRIVATE))]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Unchanged);
}

#[tokio::test]
async fn a_payload_key_missing_at_start_is_picked_up_when_it_appears() {
    let a = KeyDir::keygen(1024);
    let mut s = setup(&a, Duration::from_secs(600));
    s.payload.update(&[]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Failed);
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.8"), now()).await,
        Err(Refusal::KeyUnavailable)
    );
    s.payload
        .update(&[(PAYLOAD_PRIVATE, a.read(PAYLOAD_PRIVATE))]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    assert_eq!(
        s.auth.authenticate(&fresh(&a, "10.0.0.8"), now()).await,
        Ok(ip("10.0.0.8"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn no_request_fails_while_the_signing_key_rotates_under_load() {
    let a = KeyDir::keygen(1024);
    let b = KeyDir::keygen(1024);
    let mut s = setup(&a, Duration::from_secs(600));
    s.reloader.reload();
    let reloader = Arc::new(s.reloader);
    let running = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(gateway::run_reloads(
        vec![reloader.clone()],
        Duration::from_millis(5),
        {
            let running = running.clone();
            async move { running.notified().await }
        },
    ));
    // Tokens signed by either key, each new to the cache, so every one is verified.
    let by_a: Vec<String> = (0..150)
        .map(|i| fresh(&a, &format!("10.1.0.{i}")))
        .collect();
    let by_b_minter = gateway_tooling::mint::Minter::from_pem(
        &b.read(SIGNING_PRIVATE),
        &a.read(PAYLOAD_PUBLIC),
        MintMode::Pkcs1,
    )
    .unwrap();
    let by_b: Vec<String> = (0..150)
        .map(|i| {
            by_b_minter
                .mint(&format!("10.2.0.{i}"), now(), 420)
                .unwrap()
        })
        .collect();
    let failures = Arc::new(AtomicU64::new(0));
    let auth = s.auth.clone();
    // Requests with a's tokens flow before, during and after the swap; b's after it.
    let flow_a = {
        let (auth, failures) = (auth.clone(), failures.clone());
        tokio::spawn(async move {
            for token in by_a {
                if auth.authenticate(&token, now()).await.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    s.signing
        .update(&[(SIGNING_PUBLIC, b.read(SIGNING_PUBLIC))]);
    // Wait until the watcher installed b (a b-token passes), counting nothing before that.
    let probe = by_b_minter.mint("10.3.0.1", now(), 420).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while auth.authenticate(&probe, now()).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation never picked up"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    for token in by_b {
        if auth.authenticate(&token, now()).await.is_err() {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
    flow_a.await.unwrap();
    running.notify_one();
    watcher.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

/// Tokens signed by `signer`'s signing key for `payload`'s payload key.
fn minter(signer: &KeyDir, payload: &KeyDir) -> gateway_tooling::mint::Minter {
    gateway_tooling::mint::Minter::from_pem(
        &signer.read(SIGNING_PRIVATE),
        &payload.read(PAYLOAD_PUBLIC),
        MintMode::Pkcs1,
    )
    .unwrap()
}

#[tokio::test]
async fn a_rotation_without_overlap_revokes_the_cached_targets_of_the_old_key() {
    let a = KeyDir::keygen(1024);
    let b = KeyDir::keygen(1024);
    let mut s = setup(&a, Duration::ZERO);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    let old = fresh(&a, "10.4.0.1");
    assert_eq!(s.auth.authenticate(&old, now()).await, Ok(ip("10.4.0.1")));
    let verified = s.auth.stats().verifications.get();
    assert_eq!(s.auth.authenticate(&old, now()).await, Ok(ip("10.4.0.1")));
    assert_eq!(s.auth.stats().verifications.get(), verified, "a cache hit");

    // One reload after the signing Secret changed: the old key and what it verified are gone.
    s.signing
        .update(&[(SIGNING_PUBLIC, b.read(SIGNING_PUBLIC))]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    assert_eq!(
        s.auth.authenticate(&old, now()).await,
        Err(Refusal::BadSignature)
    );
    let new = minter(&b, &a).mint("10.4.0.2", now(), 420).unwrap();
    assert_eq!(s.auth.authenticate(&new, now()).await, Ok(ip("10.4.0.2")));
}

#[tokio::test]
async fn removing_an_extra_signing_key_revokes_its_tokens_and_keeps_the_others_cached() {
    let a = KeyDir::keygen(1024);
    let x = KeyDir::keygen(1024);
    let y = KeyDir::keygen(1024);
    let s = setup(&a, Duration::ZERO);
    let mut extra = SecretVolume::new(
        &s._tmp.path().join("config.extra"),
        &[(SIGNING_PUBLIC, x.read(SIGNING_PUBLIC))],
    );
    let sources = KeySources {
        signing: vec![
            s.signing.root.join(SIGNING_PUBLIC),
            extra.root.join(SIGNING_PUBLIC),
        ],
        payload: s.payload.root.join(PAYLOAD_PRIVATE),
        padding: PayloadPadding::Pkcs1,
    };
    let reloader = KeyReloader::new(
        sources,
        Duration::ZERO,
        s.auth.clone(),
        ReloadStats::default(),
    );
    assert_eq!(reloader.reload(), ReloadOutcome::Installed);
    let by_a = fresh(&a, "10.5.0.1");
    let by_x = minter(&x, &a).mint("10.5.0.2", now(), 420).unwrap();
    assert_eq!(s.auth.authenticate(&by_a, now()).await, Ok(ip("10.5.0.1")));
    assert_eq!(s.auth.authenticate(&by_x, now()).await, Ok(ip("10.5.0.2")));

    // The extra file now holds another key: x is no longer configured.
    extra.update(&[(SIGNING_PUBLIC, y.read(SIGNING_PUBLIC))]);
    assert_eq!(reloader.reload(), ReloadOutcome::Installed);
    let verified = s.auth.stats().verifications.get();
    assert_eq!(
        s.auth.authenticate(&by_x, now()).await,
        Err(Refusal::BadSignature)
    );
    assert_eq!(s.auth.authenticate(&by_a, now()).await, Ok(ip("10.5.0.1")));
    assert_eq!(
        s.auth.stats().verifications.get(),
        verified + 1,
        "only x's token was verified again; a's came from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_refusal_outlives_a_rotation_under_concurrent_load() {
    const ROUNDS: usize = 12;
    const TOKENS: usize = 96;
    const CLIENTS: usize = 4;
    let dirs = [KeyDir::keygen(1024), KeyDir::keygen(1024)];
    let mut s = setup(&dirs[0], Duration::ZERO);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    let minters = [minter(&dirs[0], &dirs[0]), minter(&dirs[1], &dirs[0])];
    let mut stale = Vec::new();
    for round in 0..ROUNDS {
        // Each round rotates to the other key; its tokens are new and signed by that key, so
        // the clients verify them (and are refused) while the rotation happens.
        let next = (round + 1) % 2;
        let tokens: Arc<Vec<String>> = Arc::new(
            (0..TOKENS)
                .map(|i| {
                    let target = format!("10.{}.{}.{}", 6 + round, i / 200, i % 200);
                    minters[next].mint(&target, now(), 420).unwrap()
                })
                .collect(),
        );
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (auth, tokens) = (s.auth.clone(), tokens.clone());
                tokio::spawn(async move {
                    for i in 0..TOKENS {
                        let token = &tokens[(i + c * TOKENS / CLIENTS) % TOKENS];
                        let _ = auth.authenticate(token, now()).await;
                    }
                })
            })
            .collect();
        tokio::task::yield_now().await;
        s.signing
            .update(&[(SIGNING_PUBLIC, dirs[next].read(SIGNING_PUBLIC))]);
        assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
        for client in clients {
            client.await.unwrap();
        }
        // The rotation is over: every token of the new key passes, none refused from memory.
        for (i, token) in tokens.iter().enumerate() {
            if let Err(refusal) = s.auth.authenticate(token, now()).await {
                stale.push(format!("round {round}, token {i}: {refusal:?}"));
            }
        }
    }
    assert!(stale.is_empty(), "refused after the rotation: {stale:?}");
}

#[tokio::test]
async fn the_payload_key_is_warmed_when_loaded_and_when_it_changes() {
    let a = KeyDir::keygen(1024);
    let b = KeyDir::keygen(1024);
    // Loaded at start (as `Gateway::new` does): warmed before any request.
    let auth = Authenticator::new(test_config(), a.gateway_keys(PayloadPadding::Pkcs1));
    assert_eq!(auth.stats().warmups.get(), 1);
    assert_eq!(auth.stats().decryptions.get(), 0);

    let mut s = setup(&a, Duration::from_secs(600));
    assert_eq!(s.auth.stats().warmups.get(), 0, "no payload key yet");
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    assert_eq!(s.auth.stats().warmups.get(), 1, "warmed when installed");
    // A signing-only change keeps the warm payload key.
    s.signing
        .update(&[(SIGNING_PUBLIC, b.read(SIGNING_PUBLIC))]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    assert_eq!(s.auth.stats().warmups.get(), 1);
    // A new payload key is warmed before it serves.
    s.payload
        .update(&[(PAYLOAD_PRIVATE, b.read(PAYLOAD_PRIVATE))]);
    assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
    assert_eq!(s.auth.stats().warmups.get(), 2);
    assert_eq!(
        s.auth.stats().decryptions.get(),
        0,
        "no request decrypted anything"
    );
}

#[test]
fn small_keys_are_logged_once_with_their_path_and_a_recovered_payload_key_is_logged() {
    let a = KeyDir::keygen(1024);
    let b = KeyDir::keygen(1024);
    let mut s = setup(&a, Duration::from_secs(600));
    let log_path = s._tmp.path().join("gateway.log");
    let file = std::fs::File::create(&log_path).unwrap();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .finish();
    let log = || std::fs::read_to_string(&log_path).unwrap();
    let count = |what: &str| log().lines().filter(|l| l.contains(what)).count();
    tracing::subscriber::with_default(subscriber, || {
        assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
        assert_eq!(count("below 2048 bits"), 2, "signing and payload key");
        assert_eq!(count(SIGNING_PUBLIC), 1);
        assert_eq!(count(PAYLOAD_PRIVATE), 1);
        assert_eq!(s.reloader.reload(), ReloadOutcome::Unchanged);
        s.signing
            .update(&[(SIGNING_PUBLIC, b.read(SIGNING_PUBLIC))]);
        assert_eq!(s.reloader.reload(), ReloadOutcome::Installed);
        assert_eq!(count("below 2048 bits"), 3, "only the new key again");

        let good = a.read(PAYLOAD_PRIVATE);
        s.payload
            .update(&[(PAYLOAD_PRIVATE, "not a key".to_owned())]);
        assert_eq!(s.reloader.reload(), ReloadOutcome::Failed);
        assert_eq!(count("payload key file unusable"), 1);
        assert_eq!(count("usable again"), 0);
        s.payload.update(&[(PAYLOAD_PRIVATE, good)]);
        assert_eq!(s.reloader.reload(), ReloadOutcome::Unchanged);
        assert_eq!(count("payload key file usable again"), 1);
        assert_eq!(
            count("below 2048 bits"),
            3,
            "the same key back: nothing new"
        );
    });
}

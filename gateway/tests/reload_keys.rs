//! Key hot reload on a directory laid out the way the kubelet lays out a Secret volume
//! (`..<timestamp>/` holding the files, `..data` → that directory, each file a link through
//! `..data`), updated the way the kubelet updates it (new directory, atomic `..data` swap).

mod token_support;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway::mint::MintMode;
use gateway::reload::{KeyReloader, KeySources, ReloadOutcome, ReloadStats};
use gateway::token::{Authenticator, Keys, PayloadPadding, Refusal, Target};
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
    let by_b = gateway::mint::Minter::from_pem(
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
    let watcher = tokio::spawn(reloader.clone().run(Duration::from_millis(5), {
        let running = running.clone();
        async move { running.notified().await }
    }));
    // Tokens signed by either key, each new to the cache, so every one is verified.
    let by_a: Vec<String> = (0..150)
        .map(|i| fresh(&a, &format!("10.1.0.{i}")))
        .collect();
    let by_b_minter = gateway::mint::Minter::from_pem(
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

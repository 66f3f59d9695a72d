//! Key rotation while requests flow through the gateway: the signing Secret is updated the way
//! the kubelet does it (new directory, atomic `..data` swap) and no request fails, whether its
//! token was signed by the old key or the new one, during the overlap.

use crate::support_proxy;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gateway::config::KeysSection;
use gateway_tooling::keygen::{self, PAIRS};
use gateway_tooling::mint::{MintMode, Minter};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use support_proxy::*;

const SIGNING_FILE: &str = "abcdesktop_jwt_desktop_signing_public_key.pem";

fn write_generation(root: &Path, generation: u32, pem: &str) {
    let dir_name = format!("..2026_11_24_00_00_{generation:02}.{generation}");
    std::fs::create_dir(root.join(&dir_name)).unwrap();
    std::fs::write(root.join(&dir_name).join(SIGNING_FILE), pem).unwrap();
    let tmp = root.join("..data_tmp");
    symlink(&dir_name, &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

/// A signing Secret volume holding the tests' signing key as generation 1.
fn signing_volume() -> tempfile::TempDir {
    let volume = tempfile::tempdir().unwrap();
    let root = volume.path();
    write_generation(
        root,
        1,
        &std::fs::read_to_string(KEYS.signing_public()).unwrap(),
    );
    symlink(
        Path::new("..data").join(SIGNING_FILE),
        root.join(SIGNING_FILE),
    )
    .unwrap();
    volume
}

/// A new signing pair, as after a rotation, and a minter pyos would sign with (same payload key).
fn new_signing_pair() -> (keygen::GeneratedPair, Minter) {
    let new_signing = keygen::generate_pair(PAIRS[1], 1024).unwrap();
    let payload_public =
        std::fs::read_to_string(KEYS.dir.path().join(PAIRS[0].public_file)).unwrap();
    let minter =
        Minter::from_pem(&new_signing.private_pem, &payload_public, MintMode::Pkcs1).unwrap();
    (new_signing, minter)
}

/// The tests' config with the signing key read from the volume at `root` every `interval`.
fn watching(
    desktop: &Desktop,
    root: &Path,
    interval: Duration,
    overlap: Option<Duration>,
) -> gateway::config::FileConfig {
    let mut file = file_config(desktop.port_map());
    file.keys = KeysSection {
        signing_public_key: root.join(SIGNING_FILE),
        reload_interval: interval,
        signing_overlap: overlap.unwrap_or(file.keys.signing_overlap),
        ..file.keys
    };
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_signing_key_fails_no_request_during_the_overlap() {
    let desktop = Desktop::http().await;
    let volume = signing_volume();
    let root = volume.path();
    let file = watching(&desktop, root, Duration::from_millis(20), None);
    let running = Arc::new(spawn_run(file).await);

    // The new signing pair; pyos would sign with it after the rotation (same payload key).
    let (new_signing, new_minter) = new_signing_pair();
    // Fresh tokens, each new to the cache, so each request really verifies.
    let old_tokens: Vec<String> = (0..80)
        .map(|i| KEYS.minter.mint("127.0.0.1", now() - i, 600).unwrap())
        .collect();
    let new_tokens: Vec<String> = (0..80)
        .map(|i| new_minter.mint("127.0.0.1", now() - i, 600).unwrap())
        .collect();

    let failures = Arc::new(AtomicU64::new(0));
    let flow = |tokens: Vec<String>, pause: Duration| {
        let (running, failures) = (running.clone(), failures.clone());
        tokio::spawn(async move {
            for token in tokens {
                let (status, _, _) = get(&running.url("/spawner/getenv"), Some(&token)).await;
                if status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(pause).await;
            }
        })
    };
    // Old-key traffic runs before, across and after the swap.
    let old_flow = flow(old_tokens, Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(60)).await;
    write_generation(root, 2, &new_signing.public_pem);
    // Wait until the new key is in (a new-key token passes), then send new-key traffic.
    let probe = new_minter.mint("127.0.0.1", now(), 600).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut early_probes = 0.0;
    while get(&running.url("/spawner/getenv"), Some(&probe)).await.0 != 200 {
        early_probes += 1.0;
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation never picked up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let new_flow = flow(new_tokens, Duration::from_millis(1));
    old_flow.await.unwrap();
    new_flow.await.unwrap();
    assert_eq!(failures.load(Ordering::Relaxed), 0);

    let text = scrape(&running).await;
    assert!(
        sample(&text, r#"gateway_key_reloads_total{result="success"}"#).unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    // The only refusals were the probes sent before the new key was in.
    assert_eq!(
        sample(
            &text,
            r#"gateway_token_outcomes_total{outcome="bad_signature"}"#
        )
        .unwrap_or(0.0),
        early_probes,
        "{text}"
    );

    // A corrupt update keeps the keys and counts a failure.
    write_generation(
        root,
        3,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(&running).await;
        if sample(&text, r#"gateway_key_reloads_total{result="failure"}"#).unwrap_or(0.0) >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure never counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fresh = new_minter.mint("127.0.0.1", now(), 600).unwrap();
    assert_eq!(
        get(&running.url("/spawner/getenv"), Some(&fresh)).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payload_key_is_warm_before_readyz_first_answers() {
    let desktop = Desktop::http().await;
    let mut running = spawn_run(file_config(desktop.port_map())).await;
    // Before any request: ready, and the payload key already did its throw-away decryption
    // (the key reloader's first read finds the same key and keeps the warm copy).
    let (status, _, _) = get(&running.admin_url("/readyz"), None).await;
    assert_eq!(status, 200);
    let before = scrape(&running).await;
    assert_eq!(
        sample(&before, "gateway_token_key_warmups_total"),
        Some(1.0)
    );
    assert_eq!(
        sample(&before, "gateway_token_decryptions_total"),
        Some(0.0)
    );
    let (status, _, _) = get(&running.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, 200);
    let after = scrape(&running).await;
    assert_eq!(sample(&after, "gateway_token_decryptions_total"), Some(1.0));
    assert_eq!(sample(&after, "gateway_token_key_warmups_total"), Some(1.0));
    running.signal().await.unwrap();
}

/// Writes a new signing key as generation 2 of the volume at `root` (the old one gone) and
/// waits until a token of the new key passes at `url` (on a new connection); returns it.
async fn rotate_without_overlap(root: &Path, url: &str) -> String {
    let (new_signing, new_minter) = new_signing_pair();
    let new = new_minter.mint("127.0.0.1", now(), 600).unwrap();
    write_generation(root, 2, &new_signing.public_pem);
    let written = tokio::time::Instant::now();
    while get(url, Some(&new)).await.0 != 200 {
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "rotation never picked up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    new
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_without_overlap_revokes_cached_tokens_within_a_reload_interval() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let desktop = Desktop::http().await;
    let volume = signing_volume();
    let root = volume.path();
    let running = spawn_run(watching(&desktop, root, INTERVAL, Some(Duration::ZERO))).await;

    // A token of the old key, cached by its first request.
    let old = token();
    let url = running.url("/spawner/getenv");
    assert_eq!(get(&url, Some(&old)).await.0, 200);
    assert_eq!(get(&url, Some(&old)).await.0, 200);

    // The new key's token passes once the reloader ran...
    let new = rotate_without_overlap(root, &url).await;
    // ...and from that same reload on, the old key's cached token is refused, not served
    // from the cache until its expiry.
    assert_eq!(get(&url, Some(&old)).await.0, 401);
    assert_eq!(get(&url, Some(&new)).await.0, 200);
}

/// One kept-alive HTTP/1.1 connection to `addr`: every request sent on it reaches the gateway
/// on the same client connection (and so meets that connection's token memo).
async fn kept_alive(
    addr: std::net::SocketAddr,
) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<TestBody>,
    url: &str,
    token: &str,
) -> http::StatusCode {
    sender.ready().await.unwrap();
    let req = Request::get(url)
        .header("abcauthorization", format!("Bearer {token}"))
        .body(full(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    res.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_revokes_the_token_a_kept_alive_connection_keeps_sending() {
    const INTERVAL: Duration = Duration::from_millis(50);
    let desktop = Desktop::http().await;
    let volume = signing_volume();
    let root = volume.path();
    let running = spawn_run(watching(&desktop, root, INTERVAL, Some(Duration::ZERO))).await;
    let url = running.url("/spawner/getenv");

    // The browser's connection: the old key's token, request after request, on one socket.
    let old = token();
    let mut browser = kept_alive(running.addr).await;
    for _ in 0..3 {
        assert_eq!(get_on(&mut browser, &url, &old).await, 200);
    }
    let before = scrape(&running).await;
    assert_eq!(
        sample(&before, "gateway_token_verifications_total"),
        Some(1.0)
    );
    // Answered by the connection's memo, not by the shared cache.
    assert_eq!(sample(&before, "gateway_token_memo_hits_total"), Some(2.0));

    let new = rotate_without_overlap(root, &url).await;
    // The same connection, the same token: refused from that reload on.
    assert_eq!(get_on(&mut browser, &url, &old).await, 401);
    // The connection carries on with the new key's token.
    assert_eq!(get_on(&mut browser, &url, &new).await, 200);
    assert_eq!(get_on(&mut browser, &url, &new).await, 200);
}

//! The authentication-failure throttle through a running gateway: who counts as the client
//! (`[clients] trusted_proxies`) and what counts as a failure (a missing token does not).
//! IPv6 /64 grouping is covered in `throttle.rs`'s unit tests (loopback has one IPv6 address).

use crate::support_proxy;

use std::time::Duration;

use bytes::Bytes;
use gateway::config::{AbuseSection, ClientsSection};
use http::Request;
use support_proxy::*;

const LIMIT: u32 = 3;

async fn gateway(trusted: &[&str]) -> (Gateway, Desktop) {
    let desktop = Desktop::http().await;
    let mut file = file_config(desktop.port_map());
    file.abuse = AbuseSection {
        auth_failures_per_ip: LIMIT,
        auth_failure_window: Duration::from_secs(30),
    };
    file.clients = ClientsSection {
        trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
        ..ClientsSection::default()
    };
    (spawn_gateway(file).await, desktop)
}

/// A `/spawner` request with `token` (none: no header) as sent by `forwarded_for`.
async fn status(gw: &Gateway, token: Option<&str>, forwarded_for: Option<&str>) -> u16 {
    let mut req = Request::get(gw.url("/spawner/x"));
    if let Some(t) = token {
        req = req.header("abcauthorization", t);
    }
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    send(req.body(full(Bytes::new())).unwrap()).await.0.as_u16()
}

const FORGED: &str = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl";

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_throttled_on_its_own() {
    let (gw, _desktop) = gateway(&["127.0.0.1"]).await;
    for _ in 0..LIMIT {
        assert_eq!(status(&gw, Some(FORGED), Some("192.0.2.1")).await, 401);
    }
    assert_eq!(status(&gw, Some(FORGED), Some("192.0.2.1")).await, 429);
    // Another user behind the same proxy is not locked out, even with a valid token.
    assert_eq!(status(&gw, Some(FORGED), Some("192.0.2.2")).await, 401);
    assert_eq!(status(&gw, Some(&token()), Some("192.0.2.2")).await, 200);
    // A forged entry prepended by the client does not move its count elsewhere.
    assert_eq!(
        status(&gw, Some(FORGED), Some("198.51.100.9, 192.0.2.1")).await,
        429
    );
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let (gw, _desktop) = gateway(&[]).await;
    for i in 0..LIMIT {
        let from = format!("192.0.2.{i}");
        assert_eq!(status(&gw, Some(FORGED), Some(&from)).await, 401);
    }
    assert_eq!(status(&gw, Some(FORGED), Some("192.0.2.200")).await, 429);
}

#[tokio::test]
async fn requests_without_a_token_are_not_throttled() {
    let (gw, _desktop) = gateway(&[]).await;
    for _ in 0..(3 * LIMIT) {
        assert_eq!(status(&gw, None, None).await, 401);
    }
    // The budget is untouched: a valid token still passes, and forged ones count from zero.
    assert_eq!(status(&gw, Some(&token()), None).await, 200);
    for _ in 0..LIMIT {
        assert_eq!(status(&gw, Some(FORGED), None).await, 401);
    }
    assert_eq!(status(&gw, None, None).await, 429);
}

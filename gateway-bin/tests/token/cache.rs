//! The cached pipeline ([`Authenticator`]): the TTL rule, the entry bound, single-flight,
//! the negative cache. Time is injected (`now`), so TTL tests need no sleeping.

use crate::token_support;

use std::sync::Arc;

use gateway::token::{
    AuthConfig, AuthStats, Authenticator, CacheConfig, PayloadPadding, Refusal, Target,
};
use gateway_tooling::mint::MintMode;
use token_support::*;

fn authenticator(keys: &KeyDir, cache: CacheConfig) -> Authenticator {
    let config = AuthConfig {
        cache,
        ..test_config()
    };
    Authenticator::new(config, keys.gateway_keys(PayloadPadding::Pkcs1))
}

fn counts(auth: &Authenticator) -> (u64, u64) {
    let s = auth.stats();
    (
        AuthStats::get(&s.verifications),
        AuthStats::get(&s.decryptions),
    )
}

fn ip(s: &str) -> Target {
    Target::Ip(s.parse().unwrap())
}

#[tokio::test]
async fn cache_serves_a_token_until_its_exp() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(&keys, CacheConfig::default());
    let t0 = now();
    let token = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.1", t0, 420)
        .unwrap();
    assert_eq!(auth.authenticate(&token, t0).await, Ok(ip("10.0.0.1")));
    assert_eq!(counts(&auth), (1, 1));
    for later in [1, 200, 419] {
        assert_eq!(
            auth.authenticate(&token, t0 + later).await,
            Ok(ip("10.0.0.1"))
        );
    }
    assert_eq!(counts(&auth), (1, 1), "hits must not verify or decrypt");
    assert_eq!(AuthStats::get(&auth.stats().cache_hits), 3);
    // At exp the entry is no longer served; the pipeline runs and refuses.
    assert_eq!(
        auth.authenticate(&token, t0 + 420).await,
        Err(Refusal::Expired)
    );
    assert_eq!(counts(&auth), (2, 1));
}

#[tokio::test]
async fn cache_lifetime_is_capped_at_600_seconds() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(&keys, CacheConfig::default());
    let t0 = now();
    let token = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.2", t0, 3_600)
        .unwrap();
    auth.authenticate(&token, t0).await.unwrap();
    auth.authenticate(&token, t0 + 599).await.unwrap();
    assert_eq!(counts(&auth), (1, 1));
    // Past 600 s the token is checked again (and, still valid, cached again).
    auth.authenticate(&token, t0 + 600).await.unwrap();
    assert_eq!(counts(&auth), (2, 2));
    auth.authenticate(&token, t0 + 601).await.unwrap();
    assert_eq!(counts(&auth), (2, 2));
}

#[tokio::test]
async fn tokens_with_one_second_or_less_left_are_not_cached() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(&keys, CacheConfig::default());
    let t0 = now();
    let token = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.3", t0, 1)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(auth.authenticate(&token, t0).await, Ok(ip("10.0.0.3")));
    }
    assert_eq!(counts(&auth), (3, 3));
    // Two seconds left: cached.
    let token = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.3", t0, 2)
        .unwrap();
    for _ in 0..3 {
        auth.authenticate(&token, t0).await.unwrap();
    }
    assert_eq!(counts(&auth), (4, 4));
}

#[tokio::test]
async fn cache_entry_count_is_bounded() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(
        &keys,
        CacheConfig {
            max_entries: 20,
            ..CacheConfig::default()
        },
    );
    let minter = keys.minter(MintMode::Pkcs1);
    let t0 = now();
    for i in 0..120 {
        let token = minter.mint(&format!("10.0.1.{i}"), t0, 420).unwrap();
        assert_eq!(
            auth.authenticate(&token, t0).await,
            Ok(ip(&format!("10.0.1.{i}")))
        );
    }
    let entries = auth.cached_entries().await;
    assert!(
        (1..=20).contains(&entries),
        "{entries} entries for a bound of 20"
    );
}

/// Releases `n` tasks at once on one token; returns their answers.
async fn all_at_once(
    auth: &Arc<Authenticator>,
    token: &Arc<str>,
    now: i64,
    n: usize,
) -> Vec<Result<Target, Refusal>> {
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (auth, token, start) = (auth.clone(), token.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                auth.authenticate(&token, now).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_requests_with_one_new_token_do_one_decryption() {
    let keys = KeyDir::keygen(2048);
    let auth = Arc::new(authenticator(&keys, CacheConfig::default()));
    let t0 = now();
    let token: Arc<str> = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.4", t0, 420)
        .unwrap()
        .into();
    for result in all_at_once(&auth, &token, t0, 1_000).await {
        assert_eq!(result, Ok(ip("10.0.0.4")));
    }
    assert_eq!(counts(&auth), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_bad_token_do_one_verification() {
    let keys = KeyDir::keygen(2048);
    let stranger = KeyDir::keygen(1024);
    let auth = Arc::new(authenticator(&keys, CacheConfig::default()));
    let t0 = now();
    let token: Arc<str> = stranger
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.5", t0, 420)
        .unwrap()
        .into();
    for result in all_at_once(&auth, &token, t0, 500).await {
        assert_eq!(result, Err(Refusal::BadSignature));
    }
    assert_eq!(counts(&auth), (1, 0));
}

#[tokio::test]
async fn negative_cache_absorbs_a_flood_of_one_bad_token() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(&keys, CacheConfig::default());
    let t0 = now();
    let expired = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.6", t0 - 1_000, 420)
        .unwrap();
    for _ in 0..1_000 {
        assert_eq!(auth.authenticate(&expired, t0).await, Err(Refusal::Expired));
    }
    assert_eq!(counts(&auth), (1, 0));
    assert_eq!(AuthStats::get(&auth.stats().negative_hits), 999);
}

#[tokio::test]
async fn negative_cache_can_be_disabled() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(
        &keys,
        CacheConfig {
            negative_ttl: std::time::Duration::ZERO,
            ..CacheConfig::default()
        },
    );
    for _ in 0..5 {
        assert_eq!(
            auth.authenticate("a.b.c", now()).await,
            Err(Refusal::Malformed)
        );
    }
    let mut claims = serde_json::json!({"exp": now() - 5, "hash": "x"}).to_string();
    claims.push(' ');
    let token = keys
        .minter(MintMode::Pkcs1)
        .sign_claims(claims.as_bytes())
        .unwrap();
    for _ in 0..5 {
        assert_eq!(
            auth.authenticate(&token, now()).await,
            Err(Refusal::Expired)
        );
    }
    assert_eq!(counts(&auth), (5, 0));
}

#[tokio::test]
async fn remembered_refusals_are_forgotten_when_keys_change() {
    let old = KeyDir::keygen(1024);
    let new = KeyDir::keygen(1024);
    let auth = authenticator(&old, CacheConfig::default());
    let token = new
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.7", now(), 420)
        .unwrap();
    assert_eq!(
        auth.authenticate(&token, now()).await,
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        auth.authenticate(&token, now()).await,
        Err(Refusal::BadSignature)
    );
    assert_eq!(counts(&auth), (1, 0));
    auth.replace_keys(new.gateway_keys(PayloadPadding::Pkcs1));
    assert_eq!(auth.authenticate(&token, now()).await, Ok(ip("10.0.0.7")));
}

#[tokio::test]
async fn not_yet_valid_is_not_remembered() {
    let keys = KeyDir::keygen(1024);
    let auth = authenticator(&keys, CacheConfig::default());
    let t0 = now();
    let hash = keys
        .minter(MintMode::Pkcs1)
        .encrypt_hash("10.0.0.8")
        .unwrap();
    let claims = serde_json::json!({"nbf": t0 + 10, "hash": hash, "exp": t0 + 420});
    let token = keys
        .minter(MintMode::Pkcs1)
        .sign_claims(claims.to_string().as_bytes())
        .unwrap();
    assert_eq!(
        auth.authenticate(&token, t0).await,
        Err(Refusal::NotYetValid)
    );
    assert_eq!(auth.authenticate(&token, t0 + 10).await, Ok(ip("10.0.0.8")));
}

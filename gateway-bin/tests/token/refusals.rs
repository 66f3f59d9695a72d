//! The refusal matrix: one named test per way a token can be wrong, each asserting the exact
//! [`Refusal`] and, where it matters, how far the pipeline got (verifications, decryptions).

use crate::token_support;

use std::sync::OnceLock;

use base64::Engine as _;
use gateway::token::{
    self, AuthConfig, AuthStats, Keys, PayloadKey, PayloadPadding, Refusal, SigningKey,
};
use gateway_tooling::mint::MintMode;
use token_support::*;

/// One 2048-bit key directory for the whole file (jsonwebtoken signs only with ≥ 2048 bits).
fn keys() -> &'static KeyDir {
    static KEYS: OnceLock<KeyDir> = OnceLock::new();
    KEYS.get_or_init(|| KeyDir::keygen(2048))
}

fn gateway_keys() -> Keys {
    keys().gateway_keys(PayloadPadding::Pkcs1)
}

/// Runs the pipeline; returns the outcome and the (verifications, decryptions) it did.
fn run_with(token: &str, keys: &Keys, config: &AuthConfig) -> (Result<(), Refusal>, u64, u64) {
    let stats = AuthStats::default();
    let result = token::check(token, keys, config, now(), &stats).map(|_| ());
    (
        result,
        AuthStats::get(&stats.verifications),
        AuthStats::get(&stats.decryptions),
    )
}

fn run(token: &str) -> (Result<(), Refusal>, u64, u64) {
    run_with(token, &gateway_keys(), &test_config())
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn valid_hash() -> String {
    keys()
        .minter(MintMode::Pkcs1)
        .encrypt_hash("10.1.1.1")
        .unwrap()
}

fn signed(claims: serde_json::Value) -> String {
    keys()
        .minter(MintMode::Pkcs1)
        .sign_claims(claims.to_string().as_bytes())
        .unwrap()
}

fn good_claims() -> serde_json::Value {
    serde_json::json!({"key": 0, "nfb": now(), "hash": valid_hash(), "exp": now() + 420})
}

#[test]
fn control_a_well_formed_token_passes() {
    assert_eq!(run(&signed(good_claims())), (Ok(()), 1, 1));
}

#[test]
fn refuses_alg_none() {
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = b64url(good_claims().to_string().as_bytes());
    for token in [
        format!("{header}.{claims}."),
        format!("{header}.{claims}.c2ln"),
    ] {
        assert_eq!(run(&token), (Err(Refusal::BadAlgorithm), 0, 0));
    }
    // A header with no alg at all (`{}`).
    assert_eq!(run("e30.e30.e30"), (Err(Refusal::BadAlgorithm), 0, 0));
}

#[test]
fn refuses_hs256_signed_with_the_public_key_pem() {
    // The original gateway's hole: lua-resty-jwt without an algorithm allow-list HMACs with
    // the PEM text of the signing public key, which anyone can read.
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let pem = keys().read(SIGNING_PUBLIC);
    let token = encode(
        &Header::new(Algorithm::HS256),
        &good_claims(),
        &EncodingKey::from_secret(pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(run(&token), (Err(Refusal::BadAlgorithm), 0, 0));
}

#[test]
fn refuses_rs512_even_with_a_valid_signature() {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
    let private = keys().read(SIGNING_PRIVATE);
    let token = encode(
        &Header::new(Algorithm::RS512),
        &good_claims(),
        &EncodingKey::from_rsa_pem(private.as_bytes()).unwrap(),
    )
    .unwrap();
    // The signature really is valid RS512 (the oracle says so)…
    let public = DecodingKey::from_rsa_pem(keys().read(SIGNING_PUBLIC).as_bytes()).unwrap();
    assert!(
        decode::<serde_json::Value>(&token, &public, &Validation::new(Algorithm::RS512)).is_ok()
    );
    // …and still refused before any key is touched.
    assert_eq!(run(&token), (Err(Refusal::BadAlgorithm), 0, 0));
}

#[test]
fn refuses_tampered_payload() {
    let token = signed(good_claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims = good_claims();
    claims["exp"] = serde_json::json!(now() + 86_400);
    let forged = b64url(claims.to_string().as_bytes());
    parts[1] = &forged;
    assert_eq!(run(&parts.join(".")), (Err(Refusal::BadSignature), 1, 0));
}

#[test]
fn refuses_tampered_signature() {
    let token = signed(good_claims());
    let (head, sig) = token.rsplit_once('.').unwrap();
    let mut sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    sig[10] ^= 0x01;
    assert_eq!(
        run(&format!("{head}.{}", b64url(&sig))),
        (Err(Refusal::BadSignature), 1, 0)
    );
}

#[test]
fn refuses_signature_by_another_key() {
    let other = KeyDir::keygen(1024);
    let token = other
        .minter(MintMode::Pkcs1)
        .sign_claims(good_claims().to_string().as_bytes())
        .unwrap();
    assert_eq!(run(&token), (Err(Refusal::BadSignature), 1, 0));
}

#[test]
fn refuses_expired() {
    let token = keys()
        .minter(MintMode::Pkcs1)
        .mint("10.1.1.1", now() - 1_000, 420)
        .unwrap();
    assert_eq!(run(&token), (Err(Refusal::Expired), 1, 0));
    // With enough leeway the same token passes.
    let config = AuthConfig {
        leeway: 1_000,
        ..test_config()
    };
    assert_eq!(run_with(&token, &gateway_keys(), &config).0, Ok(()));
}

#[test]
fn refuses_nbf_in_future() {
    let mut claims = good_claims();
    claims["nbf"] = serde_json::json!(now() + 120);
    assert_eq!(run(&signed(claims)), (Err(Refusal::NotYetValid), 1, 0));
}

#[test]
fn refuses_missing_exp() {
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(run(&signed(claims)), (Err(Refusal::MissingExp), 1, 0));
}

#[test]
fn refuses_missing_hash() {
    let mut claims = good_claims();
    claims.as_object_mut().unwrap().remove("hash");
    assert_eq!(run(&signed(claims)), (Err(Refusal::MissingHash), 1, 0));
}

#[test]
fn refuses_hash_not_base64() {
    let mut claims = good_claims();
    claims["hash"] = serde_json::json!("not base64 at all!");
    assert_eq!(run(&signed(claims)), (Err(Refusal::HashNotBase64), 1, 1));
}

#[test]
fn refuses_hash_encrypted_for_another_key() {
    let other = KeyDir::keygen(2048);
    let mut claims = good_claims();
    claims["hash"] = serde_json::json!(
        other
            .minter(MintMode::Pkcs1)
            .encrypt_hash("10.1.1.1")
            .unwrap()
    );
    assert_eq!(run(&signed(claims)), (Err(Refusal::Undecryptable), 1, 1));
}

#[test]
fn refuses_hash_of_the_wrong_length() {
    let mut claims = good_claims();
    claims["hash"] =
        serde_json::json!(base64::engine::general_purpose::STANDARD.encode([7u8; 100]));
    assert_eq!(run(&signed(claims)), (Err(Refusal::Undecryptable), 1, 1));
}

#[test]
fn refuses_decrypted_target_that_is_not_a_host() {
    for target in [
        "evil.example.com",
        "10.0.0.1:22",
        "169.254.169.254",
        "a b",
        "0.0.0.0",
    ] {
        let token = keys()
            .minter(MintMode::Pkcs1)
            .mint(target, now(), 420)
            .unwrap();
        assert_eq!(run(&token), (Err(Refusal::InvalidTarget), 1, 1), "{target}");
    }
    // Loopback only where the policy allows it (tests and the demo do; production does not).
    let token = keys()
        .minter(MintMode::Pkcs1)
        .mint("127.0.0.1", now(), 420)
        .unwrap();
    assert_eq!(run(&token).0, Ok(()));
    let production = AuthConfig::default();
    assert_eq!(
        run_with(&token, &gateway_keys(), &production).0,
        Err(Refusal::InvalidTarget)
    );
}

#[test]
fn refuses_token_over_the_size_bound() {
    let long = "a".repeat(token::DEFAULT_MAX_TOKEN_LEN + 1);
    assert_eq!(run(&long), (Err(Refusal::TooLong), 0, 0));
    // The bound is configurable and applies to otherwise valid tokens.
    let token = signed(good_claims());
    let config = AuthConfig {
        max_token_len: token.len() - 1,
        ..test_config()
    };
    assert_eq!(
        run_with(&token, &gateway_keys(), &config),
        (Err(Refusal::TooLong), 0, 0)
    );
}

#[test]
fn refuses_empty_token() {
    assert_eq!(run(""), (Err(Refusal::Missing), 0, 0));
}

#[test]
fn refuses_garbage() {
    for garbage in [
        "garbage",
        "a.b.c",
        "....",
        "eyJ.eyJ.eyJ",
        "\u{0}\u{1}.x.y",
        "Bearer",
    ] {
        assert_eq!(run(garbage).0, Err(Refusal::Malformed), "{garbage:?}");
    }
    // Header and claims that are JSON but not objects.
    let token = format!("{}.{}.c2ln", b64url(b"[1]"), b64url(b"{}"));
    assert_eq!(run(&token), (Err(Refusal::Malformed), 0, 0));
}

#[test]
fn signature_is_verified_before_any_decryption() {
    // A perfectly decryptable hash under a signature no key makes: never decrypted.
    let other = KeyDir::keygen(1024);
    let token = other
        .minter(MintMode::Pkcs1)
        .sign_claims(good_claims().to_string().as_bytes())
        .unwrap();
    assert_eq!(run(&token), (Err(Refusal::BadSignature), 1, 0));
    // An undecryptable hash under a bad signature reports the signature, not the hash.
    let mut claims = good_claims();
    claims["hash"] = serde_json::json!("AAAA");
    let token = other
        .minter(MintMode::Pkcs1)
        .sign_claims(claims.to_string().as_bytes())
        .unwrap();
    assert_eq!(run(&token), (Err(Refusal::BadSignature), 1, 0));
}

#[test]
fn missing_payload_key_is_a_server_fault_after_verification() {
    let keys = Keys {
        signing: gateway_keys().signing,
        payload: None,
    };
    let token = signed(good_claims());
    assert_eq!(
        run_with(&token, &keys, &test_config()),
        (Err(Refusal::KeyUnavailable), 1, 0)
    );
    assert_eq!(Refusal::KeyUnavailable.status(), 503);
    // A forged token is still a 401, not a 503.
    assert_eq!(
        run_with("a.b.c", &keys, &test_config()).0,
        Err(Refusal::Malformed)
    );
}

#[test]
fn any_of_several_signing_keys_verifies_during_a_rotation() {
    let old = KeyDir::keygen(1024);
    let keys_both = Keys {
        signing: vec![
            SigningKey::from_pem(&old.read(SIGNING_PUBLIC)).unwrap(),
            SigningKey::from_pem(&keys().read(SIGNING_PUBLIC)).unwrap(),
        ],
        payload: Some(
            PayloadKey::from_pem(&keys().read(PAYLOAD_PRIVATE), PayloadPadding::Pkcs1).unwrap(),
        ),
    };
    let by_new = signed(good_claims());
    let by_old = old
        .minter(MintMode::Pkcs1)
        .sign_claims(good_claims().to_string().as_bytes())
        .unwrap();
    assert_eq!(run_with(&by_new, &keys_both, &test_config()).0, Ok(()));
    assert_eq!(run_with(&by_old, &keys_both, &test_config()).0, Ok(()));
    let stranger = KeyDir::keygen(1024);
    let by_stranger = stranger
        .minter(MintMode::Pkcs1)
        .sign_claims(good_claims().to_string().as_bytes())
        .unwrap();
    assert_eq!(
        run_with(&by_stranger, &keys_both, &test_config()).0,
        Err(Refusal::BadSignature)
    );
}

#[test]
fn key_files_outside_the_accepted_sizes_or_kinds_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &["genrsa", "-traditional", "-out", "k512.pem", "512"],
    );
    openssl(
        dir.path(),
        &["rsa", "-in", "k512.pem", "-pubout", "-out", "p512.pem"],
    );
    let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
    assert!(SigningKey::from_pem(&read("p512.pem")).is_err());
    assert!(PayloadKey::from_pem(&read("k512.pem"), PayloadPadding::Pkcs1).is_err());
    // OAEP cannot be undone with a public key.
    let err =
        PayloadKey::from_pem(&keys().read(PAYLOAD_PUBLIC), PayloadPadding::OaepSha256).unwrap_err();
    assert!(matches!(err, gateway::KeyError::OaepNeedsPrivateKey));
    // A private key is not a signing public key.
    assert!(SigningKey::from_pem(&keys().read(SIGNING_PRIVATE)).is_err());
    // 4096 bits is the largest size accepted.
    openssl(dir.path(), &["genrsa", "-out", "k4096.pem", "4096"]);
    assert_eq!(
        PayloadKey::from_pem(&read("k4096.pem"), PayloadPadding::Pkcs1)
            .unwrap()
            .bits(),
        4096
    );
}

//! Interoperability with real pyos tokens, both ways: tokens made by Python (PyJWT 2.4.0 +
//! pycryptodome, as pyos makes them) pass the gateway's pipeline; tokens made by our minter
//! verify with PyJWT, decrypt with pycryptodome and `openssl pkeyutl`, and decode with
//! jsonwebtoken.

use crate::token_support;

use base64::Engine as _;
use gateway::token::{
    self, AuthStats, Keys, PayloadKey, PayloadPadding, Refusal, SigningKey, Target,
};
use gateway_tooling::mint::MintMode;
use token_support::*;

fn accept(keys: &Keys, token: &str) -> Result<Target, Refusal> {
    token::check(token, keys, &test_config(), now(), &AuthStats::default()).map(|c| c.target)
}

fn ip(s: &str) -> Target {
    Target::Ip(s.parse().unwrap())
}

#[test]
fn interop_tools_are_the_pinned_versions() {
    let versions = pyos(&["versions"]);
    assert!(
        versions.starts_with("2.4.0 "),
        "PyJWT must be 2.4.0, got {versions}"
    );
}

#[test]
fn pyos_token_with_keygen_1024_keys_is_accepted() {
    let keys = KeyDir::keygen(1024);
    let token = pyos_mint(&keys, "10.244.1.23", "pkcs1");
    assert_eq!(
        accept(&keys.gateway_keys(PayloadPadding::Pkcs1), &token),
        Ok(ip("10.244.1.23"))
    );
}

#[test]
fn pyos_token_with_keygen_2048_keys_is_accepted() {
    let keys = KeyDir::keygen(2048);
    let fqdn = "fry-3a9c1.desktop.abcdesktop.svc.cluster.local";
    let token = pyos_mint(&keys, fqdn, "pkcs1");
    assert_eq!(
        accept(&keys.gateway_keys(PayloadPadding::Pkcs1), &token),
        Ok(Target::Name(fqdn.into()))
    );
}

#[test]
fn pyos_token_with_openssl_install_doc_keys_is_accepted() {
    // OpenSSL 3's genrsa writes PKCS#8 (`BEGIN PRIVATE KEY`), as abcdesktop's alpine key
    // generator image does.
    let keys = KeyDir::openssl(1024, false);
    assert!(
        keys.read(PAYLOAD_PRIVATE)
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    assert!(
        keys.read(PAYLOAD_PUBLIC)
            .starts_with("-----BEGIN RSA PUBLIC KEY-----")
    );
    let token = pyos_mint(&keys, "10.1.0.7", "pkcs1");
    assert_eq!(
        accept(&keys.gateway_keys(PayloadPadding::Pkcs1), &token),
        Ok(ip("10.1.0.7"))
    );
}

#[test]
fn pyos_token_with_openssl_traditional_pkcs1_keys_is_accepted() {
    let keys = KeyDir::openssl(1024, true);
    assert!(
        keys.read(PAYLOAD_PRIVATE)
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    let token = pyos_mint(&keys, "fd00::1:7", "pkcs1");
    assert_eq!(
        accept(&keys.gateway_keys(PayloadPadding::Pkcs1), &token),
        Ok(ip("fd00::1:7"))
    );
}

#[test]
fn pyos_oaep_tokens_need_the_configured_oaep_padding() {
    let keys = KeyDir::keygen(2048);
    for (mode, padding) in [
        ("oaep-sha256", PayloadPadding::OaepSha256),
        ("oaep-sha1", PayloadPadding::OaepSha1),
    ] {
        let token = pyos_mint(&keys, "10.2.3.4", mode);
        assert_eq!(
            accept(&keys.gateway_keys(padding), &token),
            Ok(ip("10.2.3.4")),
            "{mode}"
        );
        assert_eq!(
            accept(&keys.gateway_keys(PayloadPadding::Pkcs1), &token),
            Err(Refusal::Undecryptable),
            "{mode} read as pkcs1"
        );
    }
}

#[test]
fn install_doc_mode_is_recovered_with_the_rsa_public_key() {
    // The installation document's scheme: the payload "encrypted" with the PRIVATE key
    // (PKCS#1 v1.5 block type 1, here made by openssl), the gateway holding the RSA PUBLIC KEY.
    let keys = KeyDir::openssl(1024, false);
    let dir = keys.dir.path();
    std::fs::write(dir.join("target.txt"), "10.9.8.7").unwrap();
    openssl(
        dir,
        &[
            "pkeyutl",
            "-sign",
            "-inkey",
            PAYLOAD_PRIVATE,
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-in",
            "target.txt",
            "-out",
            "hash.bin",
        ],
    );
    let hash = base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(dir.join("hash.bin")).unwrap());
    let signing = keys.path(SIGNING_PRIVATE);
    let token = pyos(&["sign", signing.to_str().unwrap(), &hash, "420"]);
    let gateway_keys = Keys {
        signing: vec![SigningKey::from_pem(&keys.read(SIGNING_PUBLIC)).unwrap()],
        payload: Some(
            PayloadKey::from_pem(&keys.read(PAYLOAD_PUBLIC), PayloadPadding::Pkcs1).unwrap(),
        ),
    };
    assert_eq!(accept(&gateway_keys, &token), Ok(ip("10.9.8.7")));
    // The same key file can never decrypt pyos's real (public-key, block type 2) hash.
    let pyos_token = pyos_mint(&keys, "10.9.8.7", "pkcs1");
    assert_eq!(
        accept(&gateway_keys, &pyos_token),
        Err(Refusal::Undecryptable)
    );
}

#[test]
fn minted_tokens_verify_with_pyjwt_and_decrypt_with_pycryptodome() {
    for bits in [1024, 2048] {
        let keys = KeyDir::keygen(bits);
        for (mode, py_mode) in [
            (MintMode::Pkcs1, "pkcs1"),
            (MintMode::OaepSha256, "oaep-sha256"),
            (MintMode::OaepSha1, "oaep-sha1"),
        ] {
            let token = keys.minter(mode).mint("10.244.0.9", now(), 420).unwrap();
            let signing = keys.path(SIGNING_PUBLIC);
            let payload = keys.path(PAYLOAD_PRIVATE);
            let target = pyos(&[
                "check",
                &token,
                signing.to_str().unwrap(),
                payload.to_str().unwrap(),
                py_mode,
            ]);
            assert_eq!(target, "10.244.0.9", "{bits} bits, {py_mode}");
        }
    }
}

fn hash_of(token: &str) -> Vec<u8> {
    let claims = token.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(claims["hash"].as_str().unwrap())
        .unwrap()
}

#[test]
fn minted_pkcs1_hash_decrypts_with_openssl_pkeyutl() {
    let keys = KeyDir::keygen(1024);
    let token = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.5.5", now(), 420)
        .unwrap();
    let dir = keys.dir.path();
    std::fs::write(dir.join("hash.bin"), hash_of(&token)).unwrap();
    let plain = openssl(
        dir,
        &[
            "pkeyutl",
            "-decrypt",
            "-inkey",
            PAYLOAD_PRIVATE,
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-in",
            "hash.bin",
        ],
    );
    assert_eq!(plain, b"10.0.5.5");
}

#[test]
fn minted_rsapublickey_hash_recovers_with_openssl_verifyrecover() {
    let keys = KeyDir::keygen(1024);
    let token = keys
        .minter(MintMode::Rsapublickey)
        .mint("10.0.6.6", now(), 420)
        .unwrap();
    let dir = keys.dir.path();
    std::fs::write(dir.join("hash.bin"), hash_of(&token)).unwrap();
    let plain = openssl(
        dir,
        &[
            "pkeyutl",
            "-verifyrecover",
            "-pubin",
            "-keyform",
            "PEM",
            "-inkey",
            PAYLOAD_PUBLIC,
            "-pkeyopt",
            "rsa_padding_mode:pkcs1",
            "-in",
            "hash.bin",
        ],
    );
    assert_eq!(plain, b"10.0.6.6");
    // And the gateway, given that RSA PUBLIC KEY file, recovers it too.
    let gateway_keys = Keys {
        signing: vec![SigningKey::from_pem(&keys.read(SIGNING_PUBLIC)).unwrap()],
        payload: Some(
            PayloadKey::from_pem(&keys.read(PAYLOAD_PUBLIC), PayloadPadding::Pkcs1).unwrap(),
        ),
    };
    assert_eq!(accept(&gateway_keys, &token), Ok(ip("10.0.6.6")));
}

#[test]
fn minted_token_layout_matches_pyjwt_byte_for_byte_where_deterministic() {
    let keys = KeyDir::keygen(1024);
    let ours = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.1", now(), 420)
        .unwrap();
    let theirs = pyos_mint(&keys, "10.0.0.1", "pkcs1");
    let header = |t: &str| t.split('.').next().unwrap().to_owned();
    assert_eq!(header(&ours), header(&theirs));
    assert_eq!(header(&ours), "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9");
    let keys_of = |t: &str| {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.split('.').nth(1).unwrap())
            .unwrap();
        let text = String::from_utf8(json).unwrap();
        // Compact JSON, claims in pyos's insertion order.
        assert!(!text.contains(' '), "{text}");
        ["\"key\":", "\"nfb\":", "\"hash\":", "\"exp\":"].map(|k| text.find(k).unwrap())
    };
    let (a, b) = (keys_of(&ours), keys_of(&theirs));
    assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
    assert!(b.windows(2).all(|w| w[0] < w[1]), "{b:?}");
}

#[test]
fn jsonwebtoken_oracle_agrees_on_minted_tokens() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
    // jsonwebtoken's aws-lc backend only verifies keys of 2048 bits or more.
    let keys = KeyDir::keygen(2048);
    let token = keys
        .minter(MintMode::Pkcs1)
        .mint("10.0.0.2", now(), 420)
        .unwrap();
    let key = DecodingKey::from_rsa_pem(keys.read(SIGNING_PUBLIC).as_bytes()).unwrap();
    let data =
        decode::<serde_json::Value>(&token, &key, &Validation::new(Algorithm::RS256)).unwrap();
    let ours = token::check(
        &token,
        &keys.gateway_keys(PayloadPadding::Pkcs1),
        &test_config(),
        now(),
        &AuthStats::default(),
    )
    .unwrap();
    assert_eq!(
        data.claims["hash"].as_str(),
        Some(ours.claims.hash.as_str())
    );
    assert_eq!(data.claims["exp"].as_i64(), Some(ours.claims.exp));
    let mut tampered = token;
    tampered.push('A');
    assert!(
        decode::<serde_json::Value>(&tampered, &key, &Validation::new(Algorithm::RS256)).is_err()
    );
    assert!(
        token::check(
            &tampered,
            &keys.gateway_keys(PayloadPadding::Pkcs1),
            &test_config(),
            now(),
            &AuthStats::default()
        )
        .is_err()
    );
}

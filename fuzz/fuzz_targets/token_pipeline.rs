//! Arbitrary bytes through every token source and the uncached pipeline, with fixed keys.
//! Properties: nothing panics; extraction returns a substring of its input; a token the
//! pipeline accepts carries an `exp` in the future and a target that passes the policy again.
#![no_main]

use std::sync::OnceLock;

use gateway::keygen::{PAIRS, generate_pair};
use gateway::token::{self, AuthConfig, AuthStats, Keys, PayloadKey, PayloadPadding, RequestParts, SigningKey, TokenSource};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_800_000_000;

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let payload = generate_pair(PAIRS[0], 1024).expect("keygen");
        let signing = generate_pair(PAIRS[1], 1024).expect("keygen");
        Keys {
            signing: vec![SigningKey::from_pem(&signing.public_pem).expect("signing key")],
            payload: Some(PayloadKey::from_pem(&payload.private_pem, PayloadPadding::Pkcs1).expect("payload key")),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parts = RequestParts { header: Some(data), query: Some(&text), path: &text };
    for source in [TokenSource::Header, TokenSource::Query, TokenSource::RawQuery, TokenSource::ContainerPath] {
        if let Ok(found) = source.extract(&parts) {
            assert!(!found.is_empty());
            let inside = text.contains(found) || std::str::from_utf8(data).is_ok_and(|s| s.contains(found));
            assert!(inside, "extraction invented bytes");
            let config = AuthConfig::default();
            if let Ok(checked) = token::check(found, keys(), &config, NOW, &AuthStats::default()) {
                assert!(checked.claims.exp > NOW);
                let again = config.target.validate(checked.target.to_string().as_bytes());
                assert_eq!(again, Ok(checked.target));
            }
        }
    }
});

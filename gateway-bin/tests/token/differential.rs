//! Differential test: our RS256 verifier ([`jws::verify`]) and jsonwebtoken, used as an oracle,
//! agree on thousands of generated tokens: valid ones, and mutations of them (flipped
//! characters in each segment, truncations, swapped segments, other algorithms, padding,
//! expired and not-yet-valid claims). Every token we accept must be one the key really signed.
//!
//! Deliberate boundary differences are avoided by construction: `exp` is never within a second
//! of `now` (RFC 7519 makes `exp == now` expired, jsonwebtoken still accepts it), and every
//! claim set has a `hash` (jsonwebtoken does not know it is required).

use crate::token_support;

use std::collections::HashSet;

use gateway::token::{SigningKey, jws};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use token_support::*;

/// xorshift64*: deterministic, so a failure names a reproducible case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const B64URL_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn claims(rng: &mut Rng, now: i64) -> serde_json::Value {
    let exp = match rng.below(4) {
        0 => now - 2 - rng.below(10_000) as i64,
        _ => now + 2 + rng.below(10_000) as i64,
    };
    let mut claims = serde_json::json!({"key": 0, "nfb": now, "hash": "aGFzaA==", "exp": exp});
    if rng.below(4) == 0 {
        let nbf = if rng.below(2) == 0 {
            now + 2 + rng.below(500) as i64
        } else {
            now - 5
        };
        claims["nbf"] = serde_json::json!(nbf);
    }
    claims
}

fn mutate(rng: &mut Rng, token: &str, others: &[String]) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    match rng.below(9) {
        // Replace one character of one segment.
        0..=2 => {
            let mut bytes = token.as_bytes().to_vec();
            let at = rng.below(bytes.len());
            if bytes[at] != b'.' {
                bytes[at] = B64URL_CHARS[rng.below(B64URL_CHARS.len())];
            }
            String::from_utf8(bytes).unwrap()
        }
        3 => token[..rng.below(token.len())].to_owned(),
        // Another token's claims or signature.
        4 => {
            let other: Vec<&str> = others[rng.below(others.len())].split('.').collect();
            let which = rng.below(3);
            let mixed: Vec<&str> = (0..3)
                .map(|i| if i == which { other[i] } else { parts[i] })
                .collect();
            mixed.join(".")
        }
        // Same claims and signature under another algorithm's header.
        5 => {
            let alg = ["HS256", "RS512", "none", "PS256", "ES256", "RS256"][rng.below(6)];
            let header = b64(format!(r#"{{"typ":"JWT","alg":"{alg}"}}"#).as_bytes());
            format!("{header}.{}.{}", parts[1], parts[2])
        }
        6 => format!("{token}="),
        7 => match rng.below(3) {
            0 => format!("{token}.{}", parts[2]),
            1 => format!("{}.{}", parts[0], parts[2]),
            _ => format!("{}.{}.", parts[0], parts[1]),
        },
        _ => token.to_owned(),
    }
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn verifier_agrees_with_jsonwebtoken_on_valid_and_mutated_tokens() {
    let keys = KeyDir::keygen(2048);
    let ours = [SigningKey::from_pem(&keys.read(SIGNING_PUBLIC)).unwrap()];
    let encoding = EncodingKey::from_rsa_pem(keys.read(SIGNING_PRIVATE).as_bytes()).unwrap();
    let decoding = DecodingKey::from_rsa_pem(keys.read(SIGNING_PUBLIC).as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp"]);

    let now = now();
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let signed: Vec<String> = (0..60)
        .map(|_| {
            let mut header = Header::new(Algorithm::RS256);
            header.typ = Some("JWT".into());
            jsonwebtoken::encode(&header, &claims(&mut rng, now), &encoding).unwrap()
        })
        .collect();
    let genuine: HashSet<&str> = signed.iter().map(String::as_str).collect();

    let (mut cases, mut accepted) = (0, 0);
    for token in &signed {
        for round in 0..40 {
            let candidate = if round == 0 {
                token.clone()
            } else {
                mutate(&mut rng, token, &signed)
            };
            let mine = jws::verify(&candidate, &ours, now, 0);
            let theirs =
                jsonwebtoken::decode::<serde_json::Value>(&candidate, &decoding, &validation);
            assert_eq!(
                mine.is_ok(),
                theirs.is_ok(),
                "disagreement on case {cases}: ours {mine:?}, jsonwebtoken {:?}\n{candidate}",
                theirs.err()
            );
            if mine.is_ok() {
                accepted += 1;
                assert!(
                    genuine.contains(candidate.as_str()),
                    "accepted a token the key never signed"
                );
            }
            cases += 1;
        }
    }
    assert_eq!(cases, 2_400);
    // The set is not trivial either way.
    assert!(
        accepted > 100 && accepted < cases / 2,
        "{accepted} of {cases} accepted"
    );
}

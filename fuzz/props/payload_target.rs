//! `payload_target`: `hash` decryption with every payload-key mode, then target validation.
//!
//! Input: a mode byte, a policy byte (bit 0: `allow_loopback`; bits 1–3: which DNS suffixes,
//! one choice being a suffix read from the input), then
//! - `0`: ciphertext bytes, base64-encoded and decrypted with every key;
//! - `1`: the same, padded or cut to the modulus size, so that every input reaches the RSA
//!   operation;
//! - `2`: the `hash` claim text itself (base64 edge cases);
//! - `3`: a plaintext, really encrypted for a mode chosen by the input, then decrypted;
//! - anything else: bytes handed straight to `TargetPolicy::validate`.
//!
//! Properties:
//! - decryption never panics; a plaintext is never longer than the padding allows;
//! - a real encryption decrypts to exactly its plaintext (and an ASCII plaintext fits);
//! - a validated target is a host the documented rule allows, checked here independently:
//!   an IP literal that is not unspecified, multicast, broadcast or link-local (loopback only
//!   when allowed, IPv4-mapped addresses reported as IPv4), equal to what the bytes spell; or a
//!   lower-case ASCII DNS name of at most 253 bytes, made of valid labels, under an allowed
//!   suffix, equal to the bytes lower-cased;
//! - `validate(target.to_string())` gives the same target back, and `authority(port)` is a URI
//!   authority naming that host.

use std::net::IpAddr;

use base64::Engine as _;
use gateway::token::{Refusal, Target, TargetPolicy};
use gateway_tooling::mint::MintMode;

use super::common::{B64STD, Input, minter, payload_keys};

/// Modulus size of the fuzz payload key, in bytes.
const MODULUS_BYTES: usize = 128;

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let policy = choose_policy(&mut input);
    match mode % 5 {
        0 => decrypt_all(&B64STD.encode(input.rest()), &policy),
        1 => {
            let mut ciphertext = input.rest().to_vec();
            ciphertext.resize(MODULUS_BYTES, 0);
            decrypt_all(&B64STD.encode(&ciphertext), &policy);
        }
        2 => decrypt_all(&String::from_utf8_lossy(input.rest()), &policy),
        3 => round_trip(&mut input, &policy),
        _ => validated(input.rest(), &policy),
    }
}

fn choose_policy(input: &mut Input<'_>) -> TargetPolicy {
    let byte = input.byte();
    let dns_suffixes = match (byte >> 1) % 6 {
        0 => vec![".svc.cluster.local".to_owned()],
        1 => vec![],
        2 => vec!["cluster.local".to_owned()],
        3 => vec![
            ".desktop.abcdesktop.svc.example.org".to_owned(),
            ".svc.cluster.local".to_owned(),
        ],
        4 => vec!["SVC.Cluster.Local".to_owned()],
        _ => vec![String::from_utf8_lossy(input.chunk()).into_owned()],
    };
    TargetPolicy {
        dns_suffixes,
        allow_loopback: byte & 1 == 1,
    }
}

/// Largest plaintext each mode can carry in a 1024-bit block.
fn max_plaintext(mode: MintMode) -> usize {
    match mode {
        MintMode::Pkcs1 | MintMode::Rsapublickey => MODULUS_BYTES - 11,
        MintMode::OaepSha1 => MODULUS_BYTES - 2 * 20 - 2,
        MintMode::OaepSha256 => MODULUS_BYTES - 2 * 32 - 2,
        // Does not fit a 1024-bit block at all (not among the fuzzed modes).
        MintMode::OaepSha512 => MODULUS_BYTES.saturating_sub(2 * 64 + 2),
    }
}

fn decrypt_all(hash: &str, policy: &TargetPolicy) {
    for (key, mode) in payload_keys() {
        if let Ok(plaintext) = key.decrypt(hash) {
            assert!(plaintext.len() <= max_plaintext(*mode), "{mode:?}");
            validated(&plaintext, policy);
        }
    }
}

fn round_trip(input: &mut Input<'_>, policy: &TargetPolicy) {
    let (key, mode) = &payload_keys()[usize::from(input.byte()) % payload_keys().len()];
    // pyos encrypts ASCII text; keep the input's bytes, made ASCII.
    let plaintext: String = input.rest().iter().map(|b| char::from(b & 0x7f)).collect();
    let Ok(hash) = minter(*mode).encrypt_hash(&plaintext) else {
        assert!(
            plaintext.len() > max_plaintext(*mode),
            "{mode:?}: fitting text refused"
        );
        return;
    };
    assert!(plaintext.len() <= max_plaintext(*mode), "{mode:?}");
    let decrypted = key.decrypt(&hash);
    assert_eq!(
        decrypted.as_deref(),
        Ok(plaintext.as_bytes()),
        "{mode:?}: decryption is not the inverse of encryption"
    );
    validated(plaintext.as_bytes(), policy);
}

/// `validate` on `bytes`, and every property of what it accepts.
fn validated(bytes: &[u8], policy: &TargetPolicy) {
    let verdict = policy.validate(bytes);
    assert_eq!(
        verdict,
        policy.validate(bytes),
        "validate is not a function"
    );
    let target = match verdict {
        Ok(target) => target,
        Err(refusal) => {
            assert_eq!(refusal, Refusal::InvalidTarget);
            return;
        }
    };
    let text = std::str::from_utf8(bytes).expect("an accepted target is UTF-8");
    match &target {
        Target::Ip(ip) => {
            let spelled: IpAddr = text.parse().expect("an IP target is an IP literal");
            assert_eq!(
                *ip,
                spelled.to_canonical(),
                "IP target is not what was spelled"
            );
            assert!(
                ip_allowed(*ip, policy.allow_loopback),
                "IP target not allowed"
            );
        }
        Target::Name(name) => {
            assert_eq!(**name, text.to_ascii_lowercase(), "name is not the input");
            assert!(name_allowed(name, &policy.dns_suffixes), "name not allowed");
        }
    }
    let again = policy.validate(target.to_string().as_bytes());
    assert_eq!(
        again.as_ref(),
        Ok(&target),
        "validate(to_string) round trip"
    );
    let uri = format!("http://{}/", target.authority(6081))
        .parse::<http::Uri>()
        .expect("target authority forms a URI");
    assert_eq!(uri.port_u16(), Some(6081));
    let host = uri.host().unwrap_or_default();
    assert_eq!(
        host.trim_start_matches('[').trim_end_matches(']'),
        target.to_string(),
        "authority names another host"
    );
}

/// The address rule of the README, from raw octets rather than std's helpers.
fn ip_allowed(ip: IpAddr, allow_loopback: bool) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let unspecified = v4.octets() == [0; 4];
            let broadcast = v4.octets() == [255; 4];
            let multicast = (224..=239).contains(&a);
            let link_local = a == 169 && b == 254;
            let loopback = a == 127;
            !(unspecified || broadcast || multicast || link_local || (loopback && !allow_loopback))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let unspecified = s == [0; 8];
            let loopback = s == [0, 0, 0, 0, 0, 0, 0, 1];
            let multicast = s[0] >> 8 == 0xff;
            let link_local = s[0] & 0xffc0 == 0xfe80;
            let v4_mapped = s[..6] == [0, 0, 0, 0, 0, 0xffff];
            !(unspecified || multicast || link_local || v4_mapped || (loopback && !allow_loopback))
        }
    }
}

/// The name rule of the README: lower-case ASCII, at most 253 bytes, labels of 1–63 letters,
/// digits and inner hyphens, a last label that is not all digits, under an allowed suffix.
fn name_allowed(name: &str, suffixes: &[String]) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let under = suffixes.iter().any(|s| {
        let s = s.trim_start_matches('.').to_ascii_lowercase();
        !s.is_empty() && name.len() > s.len() + 1 && name.ends_with(&format!(".{s}"))
    });
    let last_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    name.len() <= 253 && name.split('.').all(label_ok) && !last_numeric && under
}

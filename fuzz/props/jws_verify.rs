//! `jws_verify`: compact JWS parsing and RS256 verification with the fixed signing key.
//!
//! Input: a mode byte, then
//! - `0`: the rest is the token;
//! - `1`: claims chosen by the input (see [`choose_claims`]), minted into a real token with
//!   `gateway_tooling::mint::Minter`, which the rest of the input then mutates (4-byte operations:
//!   kind, position, value);
//! - `2`: a header chosen by the input (raw bytes, a fuzzed `alg`, or a tricky template) and
//!   chosen claims, validly signed with the fixed private key;
//! - `3`: a fuzzed signing input carrying the signature of one of three fixed tokens.
//!
//! Properties:
//! - `split` is exact: `header.payload` is the signing input, `input.signature` the token;
//! - a signature verifies only if it is *the* signature the fixed private key makes for that
//!   signing input (RSASSA-PKCS1-v1_5 is deterministic), in canonical base64url;
//! - so a mutated token that still verifies is the original token, byte for byte, and a
//!   transplanted signature verifies only on its own signing input;
//! - a token signed with the fixed key always passes the signature check (no false refusal);
//! - an accepted token's header is a JSON object whose `alg` is `RS256` (whatever else the
//!   header says: duplicate keys, escapes, `none`, `HS256`, …) with no `crit`; its claims give
//!   `exp > now`, `nbf <= now` and the `hash` string exactly as `verify` returned them;
//! - for structured claims, `verify` gives exactly the claims minted or one of the refusals
//!   those claims call for.

use std::sync::OnceLock;

use base64::Engine as _;
use gateway::token::{Claims, Refusal, jws};
use serde_json::{Map, Value, json};

use super::common::{B64URL, Input, NOW, compact, mint_claims, sign, signing_keys};

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 4 {
        0 => {
            let text = String::from_utf8_lossy(input.rest());
            universal(&text, &known_tokens());
        }
        1 => minted_then_mutated(&mut input),
        2 => chosen_header(&mut input),
        _ => transplanted(&mut input),
    }
}

/// What [`universal`] saw.
#[derive(Debug)]
struct Seen {
    verdict: Result<Claims, Refusal>,
    signature_ok: bool,
}

/// A token's signing input and signature segment.
fn halves(token: &str) -> (&str, &str) {
    token.rsplit_once('.').unwrap_or((token, ""))
}

/// Three tokens minted once from fixed claims (their signatures are transplanted in mode 3).
fn fixed_tokens() -> &'static [String] {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    TOKENS.get_or_init(|| {
        [
            json!({"key": 0, "nfb": NOW, "hash": "aGVsbG8=", "exp": NOW + 420}),
            json!({"exp": NOW + 1, "hash": ""}),
            json!({"exp": NOW - 1, "hash": "x"}),
        ]
        .iter()
        .map(|claims| mint_claims(claims.to_string().as_bytes()))
        .collect()
    })
}

fn known_tokens() -> Vec<&'static str> {
    fixed_tokens().iter().map(String::as_str).collect()
}

/// The properties every token string must satisfy, whatever produced it. `known` are tokens
/// signed with the fixed key in this run, whose signatures need not be recomputed.
fn universal(token: &str, known: &[&str]) -> Seen {
    let verdict = jws::verify(token, signing_keys(), NOW, 0);
    let Ok(segments) = jws::split(token) else {
        assert_eq!(
            verdict,
            Err(Refusal::Malformed),
            "unsplittable but not malformed"
        );
        return Seen {
            verdict,
            signature_ok: false,
        };
    };
    assert_eq!(
        format!("{}.{}", segments.header, segments.payload),
        segments.signing_input
    );
    assert_eq!(
        format!("{}.{}", segments.signing_input, segments.signature),
        token
    );
    let signature_ok = jws::check_signature(&segments, signing_keys()).is_ok();
    if signature_ok {
        let own = known
            .iter()
            .map(|t| halves(t))
            .find(|(input, _)| *input == segments.signing_input)
            .map(|(_, signature)| signature.to_owned())
            .unwrap_or_else(|| B64URL.encode(sign(segments.signing_input.as_bytes())));
        assert_eq!(
            segments.signature, own,
            "a signature other than the key's own verified"
        );
    }
    if let Ok(claims) = &verdict {
        assert!(signature_ok, "accepted without a verified signature");
        let header = json_segment(segments.header).expect("an accepted header is JSON");
        assert!(header.is_object(), "accepted header is not an object");
        assert_eq!(header.get("alg"), Some(&json!("RS256")), "accepted alg");
        // `"crit": null` names no extension; anything else must have been refused.
        assert!(
            header.get("crit").is_none_or(Value::is_null),
            "accepted a crit header"
        );
        let body = json_segment(segments.payload).expect("accepted claims are JSON");
        assert_eq!(body.get("exp").and_then(seconds), Some(claims.exp));
        assert!(claims.exp > NOW, "accepted an expired token");
        assert_eq!(body.get("nbf").and_then(seconds), claims.nbf);
        assert!(
            claims.nbf.is_none_or(|nbf| nbf <= NOW),
            "accepted before nbf"
        );
        assert_eq!(
            body.get("hash").and_then(Value::as_str),
            Some(claims.hash.as_str())
        );
    }
    Seen {
        verdict,
        signature_ok,
    }
}

fn json_segment(segment: &str) -> Option<Value> {
    serde_json::from_slice(&jws::decode_segment(segment).ok()?).ok()
}

/// A JSON time as the gateway documents it: a number, floored when fractional.
fn seconds(value: &Value) -> Option<i64> {
    let n = value.as_number()?;
    n.as_i64().or_else(|| n.as_f64().map(|f| f.floor() as i64))
}

/// What `verify` must say about structured claims: the claims, or one of these refusals.
#[derive(Debug)]
enum Expect {
    Accept(Claims),
    RefuseWith(Vec<Refusal>),
}

/// Claims JSON chosen by the input, with what `verify` must say about it (`None` for raw
/// bytes, about which nothing is predicted).
fn choose_claims(input: &mut Input<'_>) -> (Vec<u8>, Option<Expect>) {
    let kind = input.byte();
    if kind.is_multiple_of(4) {
        return (input.chunk().to_vec(), None);
    }
    let exp = match input.byte() % 7 {
        0 => None,
        1 => Some(json!(NOW + 1 + i64::from(input.u16()))),
        2 => Some(json!(NOW)),
        3 => Some(json!(NOW - i64::from(input.u16()))),
        4 => Some(json!(input.i64())),
        5 => Some(json!(NOW as f64 + f64::from(input.u16()) / 7.0)),
        _ => Some(json!(String::from_utf8_lossy(input.chunk()))),
    };
    let nbf = match input.byte() % 4 {
        0 => None,
        1 => Some(json!(NOW)),
        2 => Some(json!(NOW + 1 + i64::from(input.u16()))),
        _ => Some(json!(input.i64())),
    };
    let hash = match input.byte() % 4 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(input.u16())),
        _ => Some(json!(String::from_utf8_lossy(input.chunk()))),
    };
    // pyos's own claim order and extras (`key`, the `nfb` typo) when bit 2 says so.
    let mut map = Map::new();
    if kind & 4 != 0 {
        map.insert("key".into(), json!(0));
        map.insert("nfb".into(), json!(NOW));
    }
    for (name, value) in [("hash", &hash), ("nbf", &nbf), ("exp", &exp)] {
        if let Some(value) = value {
            map.insert(name.into(), value.clone());
        }
    }
    let json = Value::Object(map).to_string().into_bytes();

    let mut refusals = Vec::new();
    let exp_secs = match &exp {
        None => {
            refusals.push(Refusal::MissingExp);
            None
        }
        Some(v) => match seconds(v) {
            None => {
                refusals.push(Refusal::Malformed);
                None
            }
            Some(e) if e <= NOW => {
                refusals.push(Refusal::Expired);
                Some(e)
            }
            Some(e) => Some(e),
        },
    };
    let nbf_secs = nbf.as_ref().and_then(seconds);
    if nbf_secs.is_some_and(|n| n > NOW) {
        refusals.push(Refusal::NotYetValid);
    }
    let hash_text = match &hash {
        None | Some(Value::Null) => {
            refusals.push(Refusal::MissingHash);
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            refusals.push(Refusal::HashNotBase64);
            None
        }
    };
    let expect = match (refusals.is_empty(), exp_secs, hash_text) {
        (true, Some(exp), Some(hash)) => Expect::Accept(Claims {
            exp,
            nbf: nbf_secs,
            hash,
        }),
        _ => Expect::RefuseWith(refusals),
    };
    (json, Some(expect))
}

fn assert_expected(verdict: &Result<Claims, Refusal>, expect: Option<&Expect>) {
    match (expect, verdict) {
        (None, _) => {}
        (Some(Expect::Accept(claims)), verdict) => {
            assert_eq!(verdict.as_ref(), Ok(claims), "minted claims not read back");
        }
        (Some(Expect::RefuseWith(allowed)), Ok(_)) => {
            panic!("accepted claims that call for one of {allowed:?}")
        }
        (Some(Expect::RefuseWith(allowed)), Err(refusal)) => {
            assert!(allowed.contains(refusal), "{refusal:?} not in {allowed:?}");
        }
    }
}

fn minted_then_mutated(input: &mut Input<'_>) {
    let (claims, expect) = choose_claims(input);
    let original = mint_claims(&claims);
    let seen = universal(&original, &[&original]);
    // Empty claims make an empty segment, which `split` refuses before any signature check.
    assert_eq!(
        seen.signature_ok,
        !claims.is_empty(),
        "a freshly minted token did not verify"
    );
    assert_expected(&seen.verdict, expect.as_ref());

    let mut bytes = original.clone().into_bytes();
    for op in input.rest().chunks(4) {
        if bytes.is_empty() {
            break;
        }
        let get = |i: usize| op.get(i).copied().unwrap_or(0);
        let pos = usize::from(u16::from_le_bytes([get(1), get(2)])) % bytes.len();
        let value = get(3);
        match get(0) % 8 {
            0 => bytes[pos] ^= 1 << (value & 7),
            1 => bytes[pos] = value,
            2 => {
                bytes.remove(pos);
            }
            3 => bytes.insert(pos, value),
            4 => bytes.truncate(pos),
            5 => {
                let next = (pos + 1) % bytes.len();
                bytes.swap(pos, next);
            }
            6 => bytes.insert(pos, b'.'),
            _ => bytes.insert(pos, bytes[pos]),
        }
    }
    let mutated = String::from_utf8_lossy(&bytes);
    let seen = universal(&mutated, &[&original]);
    if seen.signature_ok {
        assert_eq!(mutated, original, "a mutated token still verifies");
    }
}

/// Headers that have fooled JWT libraries, each validly signed in mode 2.
const TRICKY_HEADERS: [&str; 14] = [
    r#"{"typ":"JWT","alg":"RS256"}"#,
    r#"{"alg":"RS256","typ":"JWT"}"#,
    r#"{"alg":"none"}"#,
    r#"{"alg":"HS256","typ":"JWT"}"#,
    r#"{"alg":"RS256","alg":"HS256"}"#,
    r#"{"alg":"HS256","alg":"RS256"}"#,
    r#"{"alg":"RS256","crit":["exp"]}"#,
    r#"{"alg":"RS256","crit":[]}"#,
    r#"["RS256"]"#,
    r#"{"alg":"rs256"}"#,
    r#"{"alg":"RS256 "}"#,
    r#"{"alg":"RS\u0032\u00356"}"#,
    r#"{"alg":["RS256"]}"#,
    r#" {"alg":"RS256"} "#,
];

fn chosen_header(input: &mut Input<'_>) {
    let header = match input.byte() % 3 {
        0 => input.chunk().to_vec(),
        1 => {
            let alg = String::from_utf8_lossy(input.chunk()).into_owned();
            json!({"typ": "JWT", "alg": alg}).to_string().into_bytes()
        }
        _ => {
            let i = usize::from(input.byte()) % TRICKY_HEADERS.len();
            TRICKY_HEADERS[i].as_bytes().to_vec()
        }
    };
    let (claims, expect) = choose_claims(input);
    let token = compact(&header, &claims);
    let seen = universal(&token, &[&token]);
    let splits = jws::split(&token).is_ok();
    assert_eq!(
        seen.signature_ok, splits,
        "a validly signed token was refused"
    );
    // The two headers PyJWT writes must always pass: then the claims decide.
    if header == TRICKY_HEADERS[0].as_bytes() || header == TRICKY_HEADERS[1].as_bytes() {
        assert_expected(&seen.verdict, expect.as_ref());
    }
}

fn transplanted(input: &mut Input<'_>) {
    let fixed = fixed_tokens();
    let donor = &fixed[usize::from(input.byte()) % fixed.len()];
    let signing_input = match input.byte() % 2 {
        0 => String::from_utf8_lossy(input.rest()).into_owned(),
        _ => {
            let header = B64URL.encode(input.chunk());
            let claims = B64URL.encode(input.rest());
            format!("{header}.{claims}")
        }
    };
    let (donor_input, signature) = halves(donor);
    let token = format!("{signing_input}.{signature}");
    let seen = universal(&token, &known_tokens());
    if seen.signature_ok {
        assert_eq!(
            signing_input, donor_input,
            "a transplanted signature verified"
        );
    }
}

//! Compact JWS verification, RS256 only (RFC 7515 §7.1, RFC 7518 §3.3, RFC 8725 §3.1).
//!
//! Order matters and is part of the contract: the header's `alg` is checked before any key is
//! touched; the signature is checked before the claims JSON is even parsed; the claims
//! (`exp`, `nbf`, `hash`) are read from signed bytes only. Nothing here decrypts.

use std::borrow::Cow;

use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use super::Refusal;
use crate::keys::{self, KeyError, WARN_BELOW_BITS};

/// base64url without padding, as RFC 7515 §2 defines it for JWS (and as PyJWT writes it).
/// Padding is refused, like jsonwebtoken does, so the two verifiers agree on every input.
const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone),
);

/// The only algorithm a desktop token may use.
pub const ALGORITHM: &str = "RS256";

/// Identity of a signing key: the SHA-256 of its PKCS#1 DER. The target cache remembers which
/// key verified each entry, so that removing a key revokes what it verified.
pub type KeyId = [u8; 32];

/// A public key that verifies desktop tokens, parsed once at load. Clones share the parsed key.
#[derive(Clone)]
pub struct SigningKey {
    key: ParsedPublicKey,
    bits: usize,
    id: KeyId,
    fingerprint: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("bits", &self.bits)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl SigningKey {
    /// Reads a signing public key from `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM,
    /// 1024 to 4096 bits.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        let public = keys::read_public(text)?;
        // aws-lc-rs names its 1024-bit-capable parameters "legacy"; we still pin RS256 and
        // only reach for them when the key really is that small.
        let params = if public.bits < WARN_BELOW_BITS {
            &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY
        } else {
            &signature::RSA_PKCS1_2048_8192_SHA256
        };
        let key = ParsedPublicKey::new(params, &public.pkcs1_der).map_err(|_| KeyError::Backend)?;
        Ok(SigningKey {
            key,
            bits: public.bits,
            id: super::digest(&public.pkcs1_der),
            fingerprint: super::fingerprint(&public.pkcs1_der),
        })
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// First 8 hex digits of the SHA-256 of the key's PKCS#1 DER: safe to log.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The key's identity (see [`KeyId`]).
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

/// The claims the gateway uses, read from a token whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Not-before, when present.
    pub nbf: Option<i64>,
    /// The `hash` claim: base64 of the encrypted desktop address.
    pub hash: String,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    /// RFC 7515 §4.1.11: a token naming extensions we do not implement must be refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawClaims {
    exp: Option<serde_json::Value>,
    nbf: Option<serde_json::Value>,
    hash: Option<serde_json::Value>,
}

/// The three segments of a compact JWS.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    /// `header.payload`: the bytes the signature covers.
    pub signing_input: &'a str,
    /// The base64url header segment.
    pub header: &'a str,
    /// The base64url claims segment.
    pub payload: &'a str,
    /// The base64url signature segment.
    pub signature: &'a str,
}

/// Splits a compact JWS into its three segments. Header and claims must be non-empty; an
/// empty signature is left for the algorithm check to refuse (`alg: none` tokens end in `.`).
pub fn split(token: &str) -> Result<Segments<'_>, Refusal> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Refusal::Malformed)?;
    let (header, payload) = signing_input.split_once('.').ok_or(Refusal::Malformed)?;
    if header.is_empty() || payload.is_empty() || payload.contains('.') {
        return Err(Refusal::Malformed);
    }
    Ok(Segments {
        signing_input,
        header,
        payload,
        signature,
    })
}

/// Parses a JSON *object* (serde would also fill a struct from a positional array).
fn parse_object<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Refusal> {
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(Refusal::Malformed);
    }
    serde_json::from_slice(bytes).map_err(|_| Refusal::Malformed)
}

/// Decodes one base64url segment.
pub fn decode_segment(segment: &str) -> Result<Vec<u8>, Refusal> {
    B64URL.decode(segment).map_err(|_| Refusal::Malformed)
}

/// Checks the header: a JSON object whose `alg` is exactly `RS256` and with no `crit`.
pub fn check_header(segments: &Segments<'_>) -> Result<(), Refusal> {
    let bytes = decode_segment(segments.header)?;
    let header: Header<'_> = parse_object(&bytes)?;
    if header.alg.as_deref() != Some(ALGORITHM) {
        return Err(Refusal::BadAlgorithm);
    }
    if header.crit.is_some() {
        return Err(Refusal::Malformed);
    }
    Ok(())
}

/// Verifies the signature against each key in turn (rotation: any key may have signed).
pub fn check_signature(segments: &Segments<'_>, keys: &[SigningKey]) -> Result<KeyId, Refusal> {
    let signature = decode_segment(segments.signature)?;
    let message = segments.signing_input.as_bytes();
    keys.iter()
        .find(|k| k.verifies(message, &signature))
        .map(SigningKey::id)
        .ok_or(Refusal::BadSignature)
}

fn seconds(value: &serde_json::Value) -> Result<i64, Refusal> {
    match value {
        serde_json::Value::Number(n) => n
            .as_i64()
            // A fractional or huge time still orders correctly once floored and saturated.
            .or_else(|| n.as_f64().map(|f| f.floor() as i64))
            .ok_or(Refusal::Malformed),
        _ => Err(Refusal::Malformed),
    }
}

/// Reads and time-checks the claims. Call only after [`check_signature`] succeeded.
pub fn check_claims(segments: &Segments<'_>, now: i64, leeway: u64) -> Result<Claims, Refusal> {
    let bytes = decode_segment(segments.payload)?;
    let raw: RawClaims = parse_object(&bytes)?;
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    let exp = seconds(raw.exp.as_ref().ok_or(Refusal::MissingExp)?)?;
    if now >= exp.saturating_add(leeway) {
        return Err(Refusal::Expired);
    }
    let nbf = raw.nbf.as_ref().map(seconds).transpose()?;
    if let Some(nbf) = nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(Refusal::NotYetValid);
    }
    let hash = match raw.hash {
        None | Some(serde_json::Value::Null) => return Err(Refusal::MissingHash),
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(Refusal::HashNotBase64),
    };
    Ok(Claims { exp, nbf, hash })
}

/// The whole check, in order: shape, algorithm, signature, claims.
pub fn verify(token: &str, keys: &[SigningKey], now: i64, leeway: u64) -> Result<Claims, Refusal> {
    let segments = split(token)?;
    check_header(&segments)?;
    check_signature(&segments, keys)?;
    check_claims(&segments, now, leeway)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn split_needs_three_segments_with_header_and_claims() {
        assert!(split("a.b.c").is_ok());
        assert!(
            split("a.b.").is_ok(),
            "an empty signature is the alg check's to refuse"
        );
        for bad in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "a.b.c.d.e",
            ".b.c",
            "a..c",
            "..",
            "a.b.c.",
        ] {
            assert_eq!(split(bad).unwrap_err(), Refusal::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn header_alg_must_be_exactly_rs256() {
        for (header, want) in [
            (r#"{"alg":"RS256","typ":"JWT"}"#, Ok(())),
            (r#"{"typ":"JWT","alg":"RS256"}"#, Ok(())),
            (r#"{"alg":"none"}"#, Err(Refusal::BadAlgorithm)),
            (r#"{"alg":"HS256"}"#, Err(Refusal::BadAlgorithm)),
            (r#"{"alg":"RS512"}"#, Err(Refusal::BadAlgorithm)),
            (r#"{"alg":"rs256"}"#, Err(Refusal::BadAlgorithm)),
            (r#"{"typ":"JWT"}"#, Err(Refusal::BadAlgorithm)),
            (r#"{"alg":"RS256","crit":["exp"]}"#, Err(Refusal::Malformed)),
            (r#"["RS256"]"#, Err(Refusal::Malformed)),
            (r#"{"alg":256}"#, Err(Refusal::Malformed)),
        ] {
            let token = format!("{}.{}.c2ln", b64(header), b64("{}"));
            assert_eq!(check_header(&split(&token).unwrap()), want, "{header}");
        }
    }

    fn claims(json: &str, now: i64, leeway: u64) -> Result<Claims, Refusal> {
        let token = format!("{}.{}.c2ln", b64("{}"), b64(json));
        check_claims(&split(&token).unwrap(), now, leeway)
    }

    #[test]
    fn exp_is_required_and_strict_without_leeway() {
        let ok = claims(r#"{"exp":100,"hash":"aGk="}"#, 99, 0).unwrap();
        assert_eq!((ok.exp, ok.nbf, ok.hash.as_str()), (100, None, "aGk="));
        assert_eq!(
            claims(r#"{"exp":100,"hash":"x"}"#, 100, 0),
            Err(Refusal::Expired)
        );
        assert!(claims(r#"{"exp":100,"hash":"x"}"#, 100, 5).is_ok());
        assert_eq!(
            claims(r#"{"exp":100,"hash":"x"}"#, 105, 5),
            Err(Refusal::Expired)
        );
        assert_eq!(claims(r#"{"hash":"x"}"#, 0, 0), Err(Refusal::MissingExp));
        assert_eq!(
            claims(r#"{"exp":"100","hash":"x"}"#, 0, 0),
            Err(Refusal::Malformed)
        );
        assert!(claims(r#"{"exp":100.9,"hash":"x"}"#, 99, 0).is_ok());
    }

    #[test]
    fn nbf_is_checked_when_present_and_the_pyos_typo_nfb_is_ignored() {
        assert_eq!(
            claims(r#"{"exp":200,"nbf":150,"hash":"x"}"#, 100, 0),
            Err(Refusal::NotYetValid)
        );
        assert!(claims(r#"{"exp":200,"nbf":150,"hash":"x"}"#, 100, 60).is_ok());
        assert!(claims(r#"{"exp":200,"nbf":100,"hash":"x"}"#, 100, 0).is_ok());
        assert!(claims(r#"{"key":0,"nfb":150,"hash":"x","exp":200}"#, 100, 0).is_ok());
    }

    #[test]
    fn hash_must_be_a_string() {
        assert_eq!(claims(r#"{"exp":200}"#, 100, 0), Err(Refusal::MissingHash));
        assert_eq!(
            claims(r#"{"exp":200,"hash":null}"#, 100, 0),
            Err(Refusal::MissingHash)
        );
        assert_eq!(
            claims(r#"{"exp":200,"hash":7}"#, 100, 0),
            Err(Refusal::HashNotBase64)
        );
        assert_eq!(claims(r#"[200,null,"x"]"#, 100, 0), Err(Refusal::Malformed));
        assert_eq!(
            claims("  {\"exp\":200,\"hash\":\"x\"}", 100, 0).map(|c| c.exp),
            Ok(200)
        );
    }
}

//! `keys-tool inspect`: what a token says, and what the gateway would do with it.
//!
//! Without keys it decodes the header and claims (clearly marked unverified). With the signing
//! key it says which key verified the signature; with the payload key too it runs the gateway's
//! own pipeline ([`gateway::token::check`]) and prints its verdict, including the exact refusal
//! reason the gateway would log and count.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use gateway::token::{
    self, AuthConfig, AuthStats, Keys, PayloadKey, PayloadPadding, SigningKey, jws,
};

use crate::target::{self, TargetProblem};

/// Keys and policy for an inspection.
#[derive(Debug, Default)]
pub struct InspectOptions {
    /// Signing public keys (PEM text).
    pub signing: Vec<String>,
    /// The payload key (PEM text).
    pub payload: Option<String>,
    /// Padding for a payload private key.
    pub padding: PayloadPadding,
    /// The gateway's pipeline settings to judge with.
    pub config: AuthConfig,
}

/// The gateway's verdict on a token.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough keys were given to run the whole pipeline.
    NotChecked,
    /// The gateway would proxy to this target.
    Accepted(token::Target),
    /// The gateway would refuse, for this reason.
    Refused(token::Refusal),
}

/// What `inspect` found: printable lines and the verdict.
#[derive(Debug)]
pub struct Report {
    /// The report, one `name  value` line each.
    pub text: String,
    /// The verdict.
    pub verdict: Verdict,
}

fn when(unix: i64, now: i64) -> String {
    let at = u64::try_from(unix)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .map_or_else(
            || format!("{unix} (out of range)"),
            |t| humantime::format_rfc3339_seconds(t).to_string(),
        );
    let delta = Duration::from_secs(unix.abs_diff(now));
    let human = humantime::format_duration(delta);
    if unix > now {
        format!("{at} (in {human})")
    } else {
        format!("{at} ({human} ago)")
    }
}

fn segment_text(segment: &str) -> String {
    match jws::decode_segment(segment) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => "(not base64url)".to_owned(),
    }
}

fn claim_time(claims_json: &str, name: &str) -> Option<i64> {
    let value: serde_json::Value = serde_json::from_str(claims_json).ok()?;
    value.get(name)?.as_i64()
}

/// Inspects `token` at `now` with the given keys; errors only for unusable key files.
pub fn inspect(token: &str, options: &InspectOptions, now: i64) -> anyhow::Result<Report> {
    let mut text = String::new();
    let mut line = |name: &str, value: &str| {
        let _ = writeln!(text, "{name:<12} {value}");
    };
    line("length", &format!("{} bytes", token.len()));
    line("fingerprint", &token::fingerprint(token.as_bytes()));
    match jws::split(token) {
        Ok(segments) => {
            line("header", &segment_text(segments.header));
            let claims = segment_text(segments.payload);
            line("claims", &claims);
            if let Some(nfb) = claim_time(&claims, "nfb").or_else(|| claim_time(&claims, "nbf")) {
                line("issued", &when(nfb, now));
            }
            match claim_time(&claims, "exp") {
                Some(exp) => line("expires", &when(exp, now)),
                None => line("expires", "no integer exp claim"),
            }
        }
        Err(_) => line("shape", "not a compact JWS (header.claims.signature)"),
    }

    let signing: Vec<SigningKey> = options
        .signing
        .iter()
        .map(|pem| SigningKey::from_pem(pem))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("signing key: {e}"))?;
    let payload = options
        .payload
        .as_deref()
        .map(|pem| PayloadKey::from_pem(pem, options.padding))
        .transpose()
        .map_err(|e| anyhow::anyhow!("payload key: {e}"))?;

    if signing.is_empty() {
        line("signature", "not checked (give --signing-key)");
    } else if let Ok(segments) = jws::split(token) {
        let by = signing.iter().find(|key| {
            jws::check_header(&segments).is_ok()
                && jws::check_signature(&segments, std::slice::from_ref(*key)).is_ok()
        });
        match by {
            Some(key) => line(
                "signature",
                &format!(
                    "verified by key {} ({} bits)",
                    key.fingerprint(),
                    key.bits()
                ),
            ),
            None => line(
                "signature",
                &format!("NOT verified by any of {} key(s)", signing.len()),
            ),
        }
    }
    if let Some(key) = &payload {
        line(
            "payload key",
            &format!("{} ({} bits)", key.mode().name(), key.bits()),
        );
    }

    let missing: Vec<&str> = [
        (signing.is_empty(), "--signing-key"),
        (payload.is_none(), "--payload-key"),
    ]
    .into_iter()
    .filter_map(|(missing, flag)| missing.then_some(flag))
    .collect();
    let keys = Keys { signing, payload };
    let outcome = if missing.is_empty() {
        Some(token::check(
            token,
            &keys,
            &options.config,
            now,
            &AuthStats::default(),
        ))
    } else {
        // What the gateway refuses before it touches a key needs no key here either.
        keyless_refusal(token, &options.config).map(Err)
    };
    let verdict = match outcome {
        None => {
            line(
                "verdict",
                &format!("not checked (give {})", missing.join(" and ")),
            );
            Verdict::NotChecked
        }
        Some(Ok(checked)) => {
            line("target", &checked.target.to_string());
            line("verdict", "accepted");
            Verdict::Accepted(checked.target)
        }
        Some(Err(refusal)) => {
            if refusal == token::Refusal::InvalidTarget
                && let Some(problem) = target_problem(token, &keys, &options.config, now)
            {
                line("target", &format!("refused {problem}"));
            }
            line(
                "verdict",
                &format!(
                    "refused: {} ({refusal}); the gateway answers {}",
                    refusal.reason(),
                    refusal.status()
                ),
            );
            Verdict::Refused(refusal)
        }
    };
    Ok(Report { text, verdict })
}

/// The refusal the gateway gives before any key is involved (length, shape, algorithm), if any.
fn keyless_refusal(token: &str, config: &AuthConfig) -> Option<token::Refusal> {
    if token.is_empty() {
        return Some(token::Refusal::Missing);
    }
    if token.len() > config.max_token_len {
        return Some(token::Refusal::TooLong);
    }
    jws::split(token)
        .and_then(|segments| jws::check_header(&segments))
        .err()
}

/// For a token refused as `invalid_target`: the decrypted value and why it is refused.
fn target_problem(
    token: &str,
    keys: &Keys,
    config: &AuthConfig,
    now: i64,
) -> Option<TargetProblem> {
    let claims = jws::verify(token, &keys.signing, now, config.leeway).ok()?;
    let plaintext = keys.payload.as_ref()?.decrypt(&claims.hash).ok()?;
    target::explain(&config.target, &plaintext)
}

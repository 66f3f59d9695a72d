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

    let verdict = if signing.is_empty() || payload.is_none() {
        line(
            "verdict",
            "not checked (give --signing-key and --payload-key)",
        );
        Verdict::NotChecked
    } else {
        let keys = Keys { signing, payload };
        match token::check(token, &keys, &options.config, now, &AuthStats::default()) {
            Ok(checked) => {
                line("target", &checked.target.to_string());
                line("verdict", "accepted");
                Verdict::Accepted(checked.target)
            }
            Err(refusal) => {
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
        }
    };
    Ok(Report { text, verdict })
}

//! Why a token was refused. One variant per reason the gateway can give; the proxy answers
//! every variant but [`Refusal::KeyUnavailable`] with the same generic 401, and the variant's
//! [`Refusal::reason`] goes to logs and metric labels only, never to a response body.

/// A token refusal. `Copy` and free of data on purpose: nothing taken from the token (and
/// so nothing secret) can ever travel inside it into a log line or a panic message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No token where the route expects one (absent header, empty query).
    #[error("no token in the request")]
    Missing,
    /// Longer than the configured bound; refused before any parsing.
    #[error("token longer than the configured bound")]
    TooLong,
    /// Not a compact JWS: wrong number of segments, bad base64url, header or claims that are
    /// not the JSON objects they must be, a `crit` header, a non-numeric `exp`/`nbf`.
    #[error("token is not a well-formed compact JWS")]
    Malformed,
    /// The header's `alg` is anything but `RS256` (this includes `none` and `HS256`).
    #[error("token algorithm is not RS256")]
    BadAlgorithm,
    /// No configured signing key verifies the signature.
    #[error("token signature does not verify")]
    BadSignature,
    /// `exp` is in the past (beyond the configured leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the configured leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// The signed claims carry no `exp`.
    #[error("token has no exp claim")]
    MissingExp,
    /// The signed claims carry no `hash` (the encrypted desktop address).
    #[error("token has no hash claim")]
    MissingHash,
    /// `hash` is not standard base64.
    #[error("hash claim is not base64")]
    HashNotBase64,
    /// The payload key could not decrypt `hash` (wrong key, bad padding, wrong length).
    #[error("hash claim cannot be decrypted")]
    Undecryptable,
    /// `hash` decrypted to something that is not an acceptable desktop address.
    #[error("decrypted target is not a valid desktop address")]
    InvalidTarget,
    /// The gateway has no usable payload key (a server-side fault: 503, not 401).
    #[error("payload key unavailable")]
    KeyUnavailable,
}

impl Refusal {
    /// Every variant, in declaration order (for metrics pre-registration and tests).
    pub const ALL: [Refusal; 13] = [
        Refusal::Missing,
        Refusal::TooLong,
        Refusal::Malformed,
        Refusal::BadAlgorithm,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::MissingExp,
        Refusal::MissingHash,
        Refusal::HashNotBase64,
        Refusal::Undecryptable,
        Refusal::InvalidTarget,
        Refusal::KeyUnavailable,
    ];

    /// A stable snake_case name, used as the `reason` log field and metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::TooLong => "too_long",
            Refusal::Malformed => "malformed",
            Refusal::BadAlgorithm => "bad_alg",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::MissingExp => "missing_exp",
            Refusal::MissingHash => "missing_hash",
            Refusal::HashNotBase64 => "hash_not_base64",
            Refusal::Undecryptable => "undecryptable",
            Refusal::InvalidTarget => "invalid_target",
            Refusal::KeyUnavailable => "key_unavailable",
        }
    }

    /// The HTTP status the proxy answers with: 503 when the fault is ours, 401 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Refusal::KeyUnavailable => 503,
            _ => 401,
        }
    }

    /// Whether the same token would be refused for the same reason on every later try with
    /// the same keys, so that the refusal may be remembered (negative cache). A token that is
    /// not yet valid will become valid; a missing key may be mounted; an absent token has no
    /// identity to remember.
    pub fn is_permanent(self) -> bool {
        !matches!(
            self,
            Refusal::Missing | Refusal::NotYetValid | Refusal::KeyUnavailable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_snake_case_labels() {
        let mut seen = std::collections::HashSet::new();
        for r in Refusal::ALL {
            let label = r.reason();
            assert!(seen.insert(label), "duplicate label {label}");
            assert!(
                label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            );
        }
    }

    #[test]
    fn only_key_unavailable_is_a_server_fault() {
        for r in Refusal::ALL {
            let want = if r == Refusal::KeyUnavailable {
                503
            } else {
                401
            };
            assert_eq!(r.status(), want, "{r:?}");
        }
    }
}

//! `token_pipeline`: arbitrary bytes through every token source, then the whole pipeline with
//! the fixed keys, uncached (`token::check`) and cached (`Authenticator::authenticate`).
//!
//! Input: the bytes are at once the `ABCAuthorization` header, the query string and the path.
//!
//! Properties:
//! - nothing panics; extraction returns part of its input;
//! - an accepted token has `exp` in the future and a target that validates again to itself;
//! - the cache never changes an answer: the cached pipeline agrees with `check`, on the first
//!   request for a token (a miss) and on the next one (a hit, or a remembered refusal).

use std::sync::OnceLock;

use gateway::token::{self, AuthConfig, AuthStats, Authenticator, RequestParts, TokenSource};

use super::common::{NOW, is_within, keys, new_keys};

const SOURCES: [TokenSource; 4] = [
    TokenSource::Header,
    TokenSource::Query,
    TokenSource::RawQuery,
    TokenSource::ContainerPath,
];

/// The cached pipeline, and a runtime to drive it, made once.
fn cached() -> &'static (Authenticator, tokio::runtime::Runtime) {
    static CACHED: OnceLock<(Authenticator, tokio::runtime::Runtime)> = OnceLock::new();
    CACHED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        (Authenticator::new(AuthConfig::default(), new_keys()), rt)
    })
}

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parts = RequestParts {
        header: Some(data),
        query: Some(&text),
        container: Some(&text),
    };
    let config = AuthConfig::default();
    let stats = AuthStats::default();
    let (auth, rt) = cached();
    let mut seen: Vec<&str> = Vec::new();
    for source in SOURCES {
        let Ok(found) = source.extract(&parts) else {
            continue;
        };
        assert!(!found.is_empty());
        assert!(
            is_within(found, data) || is_within(found, text.as_bytes()),
            "extraction invented bytes"
        );
        // The header, the query and the raw query often give the same text: judge it once.
        if seen.contains(&found) {
            continue;
        }
        seen.push(found);
        let checked = token::check(found, keys(), &config, NOW, &stats);
        if let Ok(checked) = &checked {
            assert!(checked.claims.exp > NOW);
            let again = config
                .target
                .validate(checked.target.to_string().as_bytes());
            assert_eq!(again.as_ref(), Ok(&checked.target));
        }
        let want = checked.map(|c| c.target);
        for attempt in ["miss", "hit"] {
            let got = rt.block_on(auth.authenticate(found, NOW));
            assert_eq!(got, want, "{source:?}: cached pipeline differs ({attempt})");
        }
    }
}

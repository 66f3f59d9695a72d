//! `token_extract`: every [`TokenSource`] over fuzzed request parts.
//!
//! Input: one flags byte (bit 0: the `ABCAuthorization` header is present, bit 1: a query
//! string is present, bits 2–7: the token length bound, 0 meaning the default 8 KiB), then
//! header, query and the container segment separated by NUL bytes (none of the three can hold
//! a NUL in a real request). The segment reaches the extractor as the container route's regex
//! hands it over (its `token` group, `[^/]+`): only when non-empty and without `/`.
//!
//! Properties, for each source:
//! - the result is exactly what the documented rule gives (an independent implementation of
//!   the module docs of `gateway::token::extract`), refusals included;
//! - a token is non-empty and lies *inside* the part it came from (same memory, nothing copied
//!   or invented);
//! - the pipeline's length bound holds: a token longer than `max_token_len` is refused as
//!   `too_long` before any parsing, a shorter one never is.

use gateway::token::{self, AuthConfig, AuthStats, Refusal, RequestParts, TokenSource};

use super::common::{Input, NOW, is_within, keys};

const SOURCES: [TokenSource; 4] = [
    TokenSource::Header,
    TokenSource::Query,
    TokenSource::RawQuery,
    TokenSource::ContainerPath,
];

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let mut fields = input.rest().splitn(3, |b| *b == 0);
    let header = fields.next().unwrap_or_default();
    let query_bytes = fields.next().unwrap_or_default();
    let segment_bytes = fields.next().unwrap_or_default();
    // hyper hands the gateway the query and path as `&str`.
    let query = String::from_utf8_lossy(query_bytes);
    let segment = String::from_utf8_lossy(segment_bytes);
    let parts = RequestParts {
        header: (flags & 1 == 1).then_some(header),
        query: (flags & 2 == 2).then_some(query.as_ref()),
        container: (!segment.is_empty() && !segment.contains('/')).then_some(segment.as_ref()),
    };
    let max_token_len = match usize::from(flags >> 2) {
        0 => token::DEFAULT_MAX_TOKEN_LEN,
        n => n,
    };
    let config = AuthConfig {
        max_token_len,
        ..AuthConfig::default()
    };

    for source in SOURCES {
        let got = source.extract(&parts);
        assert_eq!(got, expected(source, &parts), "{source:?}");
        let Ok(found) = got else {
            continue;
        };
        assert!(!found.is_empty(), "{source:?}: empty token");
        let origin: &[u8] = match source {
            TokenSource::Header => parts.header.unwrap_or_default(),
            TokenSource::Query | TokenSource::RawQuery => {
                parts.query.unwrap_or_default().as_bytes()
            }
            TokenSource::ContainerPath => parts.container.unwrap_or_default().as_bytes(),
        };
        assert!(
            is_within(found, origin),
            "{source:?}: token is not a slice of its part"
        );
        let checked = token::check(found, keys(), &config, NOW, &AuthStats::default());
        if found.len() > max_token_len {
            assert_eq!(checked.err(), Some(Refusal::TooLong), "{source:?}");
        } else {
            assert_ne!(checked.err(), Some(Refusal::TooLong), "{source:?}");
        }
    }
}

/// The rules of `gateway::token::extract`'s module docs, written again from the docs.
fn expected<'a>(source: TokenSource, parts: &RequestParts<'a>) -> Result<&'a str, Refusal> {
    fn unbearer(s: &str) -> Result<&str, Refusal> {
        let s = s.strip_prefix("Bearer ").unwrap_or(s);
        if s.is_empty() {
            Err(Refusal::Missing)
        } else {
            Ok(s)
        }
    }
    match source {
        TokenSource::Header => {
            let raw = parts.header.ok_or(Refusal::Missing)?;
            unbearer(std::str::from_utf8(raw).map_err(|_| Refusal::Malformed)?)
        }
        TokenSource::Query => {
            let query = parts.query.ok_or(Refusal::Missing)?;
            for pair in query.split('&') {
                if let Some((name, value)) = pair.split_once('=')
                    && name.eq_ignore_ascii_case("jwt_token")
                {
                    // The first `jwt_token` decides; an empty one falls back to the whole query.
                    if !value.is_empty() {
                        return unbearer(value);
                    }
                    break;
                }
            }
            unbearer(query)
        }
        TokenSource::RawQuery => unbearer(parts.query.ok_or(Refusal::Missing)?),
        TokenSource::ContainerPath => unbearer(parts.container.ok_or(Refusal::Missing)?),
    }
}

//! `token_extract`: every [`TokenSource`] over fuzzed request parts.
//!
//! Input: one flags byte (bit 0: the `ABCAuthorization` header is present, bit 1: a query
//! string is present, bits 2–7: the token length bound, 0 meaning the default 8 KiB), then
//! header, query and path separated by NUL bytes (none of the three can hold a NUL in a real
//! request).
//!
//! Properties, for each source:
//! - the result is exactly what the documented rule gives (an independent implementation of
//!   the module docs of `gateway::token::extract`), refusals included;
//! - a token is non-empty, lies *inside* the part it came from (same memory, nothing copied or
//!   invented), and never contains `/` when it comes from the path;
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
    let path_bytes = fields.next().unwrap_or_default();
    // hyper hands the gateway the query and path as `&str`.
    let query = String::from_utf8_lossy(query_bytes);
    let path = String::from_utf8_lossy(path_bytes);
    let parts = RequestParts {
        header: (flags & 1 == 1).then_some(header),
        query: (flags & 2 == 2).then_some(query.as_ref()),
        path: &path,
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
            TokenSource::ContainerPath => parts.path.as_bytes(),
        };
        assert!(
            is_within(found, origin),
            "{source:?}: token is not a slice of its part"
        );
        if source == TokenSource::ContainerPath {
            assert!(!found.contains('/'), "path token spans segments");
        }
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
        TokenSource::ContainerPath => {
            let rest = parts
                .path
                .strip_prefix("/container/")
                .ok_or(Refusal::Missing)?;
            let mut segments = rest.splitn(3, '/');
            let token = segments.next().unwrap_or_default();
            let port = segments.next().ok_or(Refusal::Missing)?;
            let port_ok = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
            if token.is_empty() || !port_ok {
                return Err(Refusal::Missing);
            }
            unbearer(token)
        }
    }
}

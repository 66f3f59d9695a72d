//! Where a desktop token travels in a request, and how it is taken out. Pure functions over
//! the request's parts; no allocation, no decoding (a JWS is already URL-safe text, and the
//! original gateway used the raw, undecoded values too).
//!
//! The sources are the original gateway's, route by route:
//! - header `ABCAuthorization` (`/spawner`, `/filer`, `/container/<port>`, …);
//! - `?jwt_token=` or else the whole raw query string (`/websockify`, `/broadcast`, …);
//! - the whole raw query string only (`/terminals/<pid>?<token>`);
//! - the first path segment of `/container/<jwt>/<port>/…`, as the container route's regex
//!   matched it (its `token` group: non-empty, no `/`).
//!
//! Whatever the source, one leading `Bearer ` (case-sensitive, one space) is removed, as the
//! original did. Length bounds are enforced by [`super::Authenticator`], before any parsing.

use serde::Deserialize;

use super::Refusal;

/// The header the abcdesktop web client puts the desktop token in.
pub const HEADER_NAME: &str = "abcauthorization";
/// The query parameter the web client puts the desktop token in for WebSockets.
pub const QUERY_PARAM: &str = "jwt_token";

/// Where a route reads its token from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenSource {
    /// Header `ABCAuthorization`, with an optional `Bearer ` prefix.
    Header,
    /// Query parameter `jwt_token`, or, when that is absent or empty, the raw query string.
    Query,
    /// The raw query string as a whole (`/terminals/<pid>?<token>`).
    RawQuery,
    /// The first segment after `/container/` in the path.
    ContainerPath,
}

/// The parts of a request a token may come from.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestParts<'a> {
    /// The raw value of the `ABCAuthorization` header, if present.
    pub header: Option<&'a [u8]>,
    /// The raw query string (without `?`), if any.
    pub query: Option<&'a str>,
    /// The `token` group of a `/container/<jwt>/<port>` route's match (the segment after
    /// `/container/`), when the route has one.
    pub container: Option<&'a str>,
}

impl TokenSource {
    /// Takes the token out of `parts`; `Err(Missing)` when this source holds nothing.
    pub fn extract<'a>(self, parts: &RequestParts<'a>) -> Result<&'a str, Refusal> {
        match self {
            TokenSource::Header => from_header(parts.header),
            TokenSource::Query => from_query(parts.query),
            TokenSource::RawQuery => from_raw_query(parts.query),
            // `/container/Bearer /<port>` leaves nothing once `Bearer ` is removed.
            TokenSource::ContainerPath => {
                non_empty(strip_bearer(parts.container.ok_or(Refusal::Missing)?))
            }
        }
    }
}

/// Removes one leading `Bearer ` (case-sensitive, exactly one space), as the original did.
pub fn strip_bearer(value: &str) -> &str {
    value.strip_prefix("Bearer ").unwrap_or(value)
}

fn non_empty(token: &str) -> Result<&str, Refusal> {
    if token.is_empty() {
        Err(Refusal::Missing)
    } else {
        Ok(token)
    }
}

/// Token from the raw `ABCAuthorization` header value. A value that is not UTF-8 cannot be
/// a JWS and is refused as malformed.
pub fn from_header(value: Option<&[u8]>) -> Result<&str, Refusal> {
    let value = value.ok_or(Refusal::Missing)?;
    let value = std::str::from_utf8(value).map_err(|_| Refusal::Malformed)?;
    non_empty(strip_bearer(value))
}

/// Token from `?jwt_token=…` (first occurrence, name matched case-insensitively like nginx's
/// `$arg_` variables) or, if that is absent or empty, from the raw query string.
pub fn from_query(query: Option<&str>) -> Result<&str, Refusal> {
    let query = query.ok_or(Refusal::Missing)?;
    let param = query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.eq_ignore_ascii_case(QUERY_PARAM).then_some(value)
    });
    match param {
        Some(value) if !value.is_empty() => non_empty(strip_bearer(value)),
        _ => non_empty(strip_bearer(query)),
    }
}

/// Token as the whole raw query string (the terminal WebSocket form `?<token>`).
pub fn from_raw_query(query: Option<&str>) -> Result<&str, Refusal> {
    non_empty(strip_bearer(query.ok_or(Refusal::Missing)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_strips_one_case_sensitive_bearer_prefix() {
        assert_eq!(from_header(Some(b"Bearer a.b.c")), Ok("a.b.c"));
        assert_eq!(from_header(Some(b"a.b.c")), Ok("a.b.c"));
        assert_eq!(from_header(Some(b"bearer a.b.c")), Ok("bearer a.b.c"));
        assert_eq!(from_header(Some(b"Bearer  a.b.c")), Ok(" a.b.c"));
        assert_eq!(from_header(Some(b"Bearer Bearer x")), Ok("Bearer x"));
    }

    #[test]
    fn header_absent_empty_or_bare_prefix_is_missing() {
        assert_eq!(from_header(None), Err(Refusal::Missing));
        assert_eq!(from_header(Some(b"")), Err(Refusal::Missing));
        assert_eq!(from_header(Some(b"Bearer ")), Err(Refusal::Missing));
    }

    #[test]
    fn header_that_is_not_utf8_is_malformed() {
        assert_eq!(from_header(Some(b"\xff\xfe")), Err(Refusal::Malformed));
    }

    #[test]
    fn query_prefers_jwt_token_parameter() {
        assert_eq!(from_query(Some("jwt_token=a.b.c")), Ok("a.b.c"));
        assert_eq!(from_query(Some("x=1&jwt_token=a.b.c&y=2")), Ok("a.b.c"));
        assert_eq!(from_query(Some("JWT_TOKEN=a.b.c")), Ok("a.b.c"));
        assert_eq!(
            from_query(Some("jwt_token=first&jwt_token=second")),
            Ok("first")
        );
        assert_eq!(from_query(Some("jwt_token=Bearer a.b.c")), Ok("a.b.c"));
    }

    #[test]
    fn query_falls_back_to_the_raw_query_string() {
        assert_eq!(from_query(Some("a.b.c")), Ok("a.b.c"));
        assert_eq!(from_query(Some("jwt_token=")), Ok("jwt_token="));
        assert_eq!(from_query(Some("other=1")), Ok("other=1"));
        assert_eq!(from_query(Some("")), Err(Refusal::Missing));
        assert_eq!(from_query(None), Err(Refusal::Missing));
    }

    #[test]
    fn raw_query_is_taken_whole() {
        assert_eq!(from_raw_query(Some("a.b.c")), Ok("a.b.c"));
        assert_eq!(
            from_raw_query(Some("jwt_token=a.b.c")),
            Ok("jwt_token=a.b.c")
        );
        assert_eq!(from_raw_query(None), Err(Refusal::Missing));
    }

    #[test]
    fn sources_dispatch_to_their_part() {
        let parts = RequestParts {
            header: Some(b"Bearer h.h.h"),
            query: Some("jwt_token=q.q.q"),
            container: Some("p.p.p"),
        };
        assert_eq!(TokenSource::Header.extract(&parts), Ok("h.h.h"));
        assert_eq!(TokenSource::Query.extract(&parts), Ok("q.q.q"));
        assert_eq!(TokenSource::RawQuery.extract(&parts), Ok("jwt_token=q.q.q"));
        assert_eq!(TokenSource::ContainerPath.extract(&parts), Ok("p.p.p"));
        let empty = RequestParts::default();
        assert_eq!(
            TokenSource::ContainerPath.extract(&empty),
            Err(Refusal::Missing)
        );
        // `/container/Bearer /<port>` leaves nothing once `Bearer ` is removed.
        let bearer_only = RequestParts {
            container: Some("Bearer "),
            ..empty
        };
        assert_eq!(
            TokenSource::ContainerPath.extract(&bearer_only),
            Err(Refusal::Missing)
        );
    }
}

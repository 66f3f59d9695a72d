//! The request path as nginx sees it before it picks a location, and the URI nginx sends
//! upstream for each `proxy_pass` form the route table uses.
//!
//! nginx does not match locations on the path the client wrote: it decodes percent-escapes,
//! merges runs of `/` (`merge_slashes on`, its default) and resolves `.` and `..` segments,
//! and it refuses with 400 what it cannot make sense of. This module does the same, byte for
//! byte (checked against a real nginx by `gateway-bin/tests/proxy/paths_nginx.rs`):
//!
//! - `%XY` (either case) is decoded, and the decoded byte is then treated as if the client had
//!   written it, so `%2F` separates segments and `%2E%2E` climbs; except that a decoded `%`,
//!   `#` or `?` is an ordinary character (it never starts an escape, a fragment or a query);
//! - a `%` not followed by two hex digits, a decoded NUL (`%00`) and a `..` that would climb
//!   above the root are refused;
//! - `//` collapses to `/`; a `.` segment disappears; a `..` segment removes the one before;
//!   a trailing `/.` leaves `/`, a trailing `/..` climbs like `/../`;
//! - a raw `#` ends the path (hyper already strips a fragment, so this is only defence);
//! - the backslash is an ordinary character (it is a separator only in nginx's Windows build).
//!
//! The upstream URI (see [`Matched::upstream_uri`]) follows nginx's proxy module: a
//! `proxy_pass` without a URI part sends the request URI exactly as the client wrote it; one
//! with a URI part and variables sends exactly that part (no query); a `rewrite … break` sends
//! the rewritten, normalized path re-escaped the way nginx escapes it, plus the original query.

use std::borrow::Cow;
use std::ops::Deref;
use std::sync::LazyLock;

use regex::bytes::Regex;

use super::{Matched, UriRule};

/// A request path nginx would refuse (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPath {
    /// `%` not followed by two hex digits.
    #[error("bad percent-escape")]
    BadEscape,
    /// `%00`.
    #[error("escaped NUL")]
    Nul,
    /// A `..` above the root.
    #[error("`..` above the root")]
    AboveRoot,
    /// Not starting with `/` (nothing a location can match).
    #[error("not an absolute path")]
    NotAbsolute,
}

/// A normalized request path. Routes are matched on its text ([`Deref`] to `str`), in which
/// bytes that are not UTF-8 (from escapes such as `%FF`) read as U+FFFD: every location of the
/// table is ASCII and its regexes treat U+FFFD as they treat any byte but `/` and newline, so
/// this changes no match; the rewrite rules work on the exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath<'a> {
    text: Cow<'a, str>,
}

impl<'a> RequestPath<'a> {
    /// Normalizes `raw`, the path of the request target (without its query), as nginx does;
    /// a path normalization would leave as it is (most) is borrowed, not copied.
    pub fn parse(raw: &'a str) -> Result<Self, InvalidPath> {
        if already_normal(raw.as_bytes()) {
            return Ok(RequestPath {
                text: Cow::Borrowed(raw),
            });
        }
        let text = match String::from_utf8(normalize(raw.as_bytes())?) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Ok(RequestPath {
            text: Cow::Owned(text),
        })
    }

    /// The text routes are matched on.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl Deref for RequestPath<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

/// One input byte after escape decoding.
#[derive(Clone, Copy)]
enum Unit {
    /// A byte that takes part in path syntax (`/`, `.`, `#`) as written or decoded.
    Syntax(u8),
    /// A decoded `%`, `#` or `?`: always an ordinary character.
    Plain(u8),
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Where the parser stands relative to the last `/` written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// Inside a segment.
    Segment,
    /// Just after a `/`.
    Slash,
    /// After `/.`.
    Dot,
    /// After `/..`.
    DotDot,
}

/// Removes the `..` segment just written and the segment before it, leaving `out` ending in
/// the `/` that preceded that segment.
fn climb(out: &mut Vec<u8>) -> Result<(), InvalidPath> {
    // `out` ends in `/..`: drop those three bytes, then the previous segment up to its `/`.
    let keep = out.len().checked_sub(3).ok_or(InvalidPath::AboveRoot)?;
    let before = out.get(..keep).unwrap_or_default();
    let Some(slash) = before.iter().rposition(|&b| b == b'/') else {
        return Err(InvalidPath::AboveRoot);
    };
    out.truncate(slash + 1);
    Ok(())
}

/// Whether [`normalize`] would return `raw` unchanged, judged without it: absolute, and
/// nothing it rewrites (no escape, no `#`, no `//`, no segment starting with a dot).
fn already_normal(raw: &[u8]) -> bool {
    raw.first() == Some(&b'/')
        && !raw.iter().any(|&b| b == b'%' || b == b'#')
        && !raw.windows(2).any(|w| w == b"//" || w == b"/.")
}

fn normalize(raw: &[u8]) -> Result<Vec<u8>, InvalidPath> {
    if raw.first() != Some(&b'/') {
        return Err(InvalidPath::NotAbsolute);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut at = At::Segment;
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        i += 1;
        let unit = if b == b'%' {
            let (Some(hi), Some(lo)) = (
                raw.get(i).copied().and_then(hex),
                raw.get(i + 1).copied().and_then(hex),
            ) else {
                return Err(InvalidPath::BadEscape);
            };
            i += 2;
            match (hi << 4) | lo {
                0 => return Err(InvalidPath::Nul),
                d @ (b'%' | b'#' | b'?') => Unit::Plain(d),
                d => Unit::Syntax(d),
            }
        } else {
            Unit::Syntax(b)
        };
        let b = match unit {
            Unit::Plain(d) => {
                out.push(d);
                at = At::Segment;
                continue;
            }
            Unit::Syntax(b'#') => break,
            Unit::Syntax(b) => b,
        };
        at = match (at, b) {
            (At::Slash, b'/') => At::Slash,
            (At::Slash, b'.') => {
                out.push(b);
                At::Dot
            }
            (At::Dot, b'/') => {
                out.pop();
                At::Slash
            }
            (At::Dot, b'.') => {
                out.push(b);
                At::DotDot
            }
            (At::DotDot, b'/') => {
                climb(&mut out)?;
                At::Slash
            }
            (_, b'/') => {
                out.push(b);
                At::Slash
            }
            (_, b) => {
                out.push(b);
                At::Segment
            }
        };
    }
    match at {
        At::Dot => {
            out.pop();
        }
        At::DotDot => climb(&mut out)?,
        At::Segment | At::Slash => {}
    }
    Ok(out)
}

/// Escapes what nginx's `ngx_escape_uri(…, NGX_ESCAPE_URI)` escapes: controls, space, bytes
/// from 0x7F up and `"#%<>?\^`{|}`, as `%XY` with upper-case hex.
fn escape_into(out: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        let escaped = b <= b' ' || b >= 0x7f || b"\"#%<>?\\^`{|}".contains(&b);
        if escaped {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        } else {
            out.push(char::from(b));
        }
    }
}

/// `rewrite ^/container/([^/]+)/([0-9]+)/(.*)$ /$3 break;` (PCRE's `$` also matches before a
/// final newline).
static CONTAINER_REWRITE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?-u)\A/container/[^/]+/[0-9]+/(.*)\n?\z").unwrap_or_else(|e| panic!("{e}"))
});
/// The container location's own regex, for a match the rewrite does not take (further in the
/// path, or a rest holding a newline): everything after the port goes.
static CONTAINER_LOCATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?s-u)/container/[^/]+/[0-9]+/(.*)").unwrap_or_else(|e| panic!("{e}"))
});

/// `$1` of `rewrite ^<prefix>(/.*)$ $1 break;` on `path`.
fn strip_rewrite<'p>(path: &'p [u8], prefix: &str) -> Option<&'p [u8]> {
    let rest = path.strip_prefix(prefix.as_bytes())?;
    let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
    (rest.first() == Some(&b'/') && !rest.contains(&b'\n')).then_some(rest)
}

impl Matched<'_, '_> {
    /// [`Matched::upstream_uri`] as the origin-form URI of the upstream request; for a route
    /// that passes the request URI unchanged, the request's own path and query, not copied.
    pub fn upstream_request_uri(&self, uri: &http::Uri) -> Result<http::Uri, http::Error> {
        if let (UriRule::Keep, Some(path_and_query)) = (&self.route.uri, uri.path_and_query()) {
            return http::Uri::builder()
                .path_and_query(path_and_query.clone())
                .build();
        }
        Ok(http::Uri::try_from(self.upstream_uri(uri))?)
    }

    /// The path and query nginx would send upstream for this match of the request `uri`
    /// (whose path is what the match was made on, normalized).
    pub fn upstream_uri(&self, uri: &http::Uri) -> String {
        let original = || match uri.query() {
            Some(q) => format!("{}?{q}", uri.path()),
            None => uri.path().to_owned(),
        };
        // A rewritten path: escaped, then the original query when there is one.
        let rewritten = |path: &[u8]| {
            let mut out = String::with_capacity(path.len() + 1);
            out.push('/');
            escape_into(&mut out, path.strip_prefix(b"/").unwrap_or(path));
            if let Some(q) = uri.query().filter(|q| !q.is_empty()) {
                out.push('?');
                out.push_str(q);
            }
            out
        };
        let normalized = || normalize(uri.path().as_bytes()).unwrap_or_default();
        match &self.route.uri {
            // `proxy_pass http://$target:$port;`
            UriRule::Keep => original(),
            // `proxy_pass http://$target:$port/;`
            UriRule::Root => "/".to_owned(),
            // `proxy_pass http://$target:$port/listen/source/….monitor;`
            UriRule::Fixed(p) => p.clone(),
            // `location = /console { proxy_pass http://$console/; }` and
            // `location /console { rewrite ^/console(/.*)$ $1 break; proxy_pass http://$console; }`
            UriRule::StripPrefix(prefix) => {
                let path = normalized();
                if path == prefix.as_bytes() {
                    return "/".to_owned();
                }
                match strip_rewrite(&path, prefix) {
                    Some(rest) => rewritten(rest),
                    None => original(),
                }
            }
            // The container rewrite; where nginx's anchored rewrite would not apply (the
            // location's unanchored regex matched further in, or the rest holds a newline),
            // the gateway still sends `/<rest>` rather than the whole path with its token.
            UriRule::ContainerRest => {
                let path = normalized();
                let rest = CONTAINER_REWRITE
                    .captures(&path)
                    .or_else(|| CONTAINER_LOCATION.captures(&path))
                    .and_then(|c| c.get(1))
                    .map_or(&b""[..], |m| m.as_bytes());
                let mut slash_rest = Vec::with_capacity(rest.len() + 1);
                slash_rest.push(b'/');
                slash_rest.extend_from_slice(rest);
                rewritten(&slash_rest)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, InvalidPath> {
        RequestPath::parse(raw).map(|p| p.as_str().to_owned())
    }

    #[test]
    fn a_path_taken_as_already_normal_is_what_normalizing_gives() {
        // Every spelling of up to six bytes over the bytes normalization cares about.
        const ALPHABET: &[u8] = b"/a.%#2F";
        let mut checked = 0;
        let mut borrowed = 0;
        for len in 1..=6u32 {
            for mut n in 0..ALPHABET.len().pow(len) {
                let mut raw = Vec::new();
                for _ in 0..len {
                    raw.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                checked += 1;
                if already_normal(&raw) {
                    borrowed += 1;
                    assert_eq!(normalize(&raw).as_deref(), Ok(&raw[..]), "{raw:?}");
                }
            }
        }
        assert!(
            borrowed > 1000 && borrowed < checked,
            "{borrowed} of {checked}"
        );
    }

    #[test]
    fn decodes_merges_and_resolves() {
        for (raw, want) in [
            ("/", "/"),
            ("/spawner/x", "/spawner/x"),
            ("/%73pawner/x", "/spawner/x"),
            ("//spawner//x", "/spawner/x"),
            ("/./spawner/./x", "/spawner/x"),
            ("/API/../spawner/x", "/spawner/x"),
            ("/a/b/../../c", "/c"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/%2e%2E/c", "/a/c"),
            ("/a%2Fb", "/a/b"),
            ("/a%2f%2fb", "/a/b"),
            ("/a%25%32%65", "/a%2e"),
            ("/a/%2e%25", "/a/.%"),
            ("/a%3F/b", "/a?/b"),
            ("/a%23b", "/a#b"),
            ("/a#b", "/a"),
            ("/a\\..\\b", "/a\\..\\b"),
            ("/a./b..", "/a./b.."),
            ("/a/...", "/a/..."),
            ("/a/..x", "/a/..x"),
        ] {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn refuses_what_nginx_refuses() {
        for (raw, why) in [
            ("/..", InvalidPath::AboveRoot),
            ("/../x", InvalidPath::AboveRoot),
            ("/a/../../x", InvalidPath::AboveRoot),
            ("/%2e%2e/x", InvalidPath::AboveRoot),
            ("/a%00", InvalidPath::Nul),
            ("/a%", InvalidPath::BadEscape),
            ("/a%4", InvalidPath::BadEscape),
            ("/a%zz", InvalidPath::BadEscape),
            ("a", InvalidPath::NotAbsolute),
            ("", InvalidPath::NotAbsolute),
        ] {
            assert_eq!(norm(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_survive_in_bytes() {
        assert_eq!(normalize(b"/filer/%FF/."), Ok(b"/filer/\xff/".to_vec()));
        assert_eq!(norm("/filer/%FF").as_deref(), Ok("/filer/\u{fffd}"));
        let mut out = String::new();
        escape_into(&mut out, b"a b\"#%<>?\\^`{|}\x7f\xff~!$&'()*+,;=:@[]");
        assert_eq!(
            out,
            "a%20b%22%23%25%3C%3E%3F%5C%5E%60%7B%7C%7D%7F%FF~!$&'()*+,;=:@[]"
        );
    }
}

//! Pure header helpers: hop-by-hop removal (RFC 9110 §7.6.1), upgrade detection, and the
//! three header profiles of the original gateway (compat doc §1.7).
//!
//! Like nginx, the gateway forwards every client header it does not set itself, including
//! `ABCAuthorization` and cookies (pod services rely on that); only hop-by-hop headers go.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::routes::HeaderProfile;

/// `X-Real-IP`.
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Forwarded-For`.
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `Keep-Alive` (not in `http::header`).
pub static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// `Proxy-Connection` (non-standard, still sent by some clients).
pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// `X-Frame-Options`.
pub static X_FRAME_OPTIONS: HeaderName = HeaderName::from_static("x-frame-options");
/// `X-XSS-Protection`.
pub static X_XSS_PROTECTION: HeaderName = HeaderName::from_static("x-xss-protection");

/// The fixed hop-by-hop headers (RFC 9110 §7.6.1, plus the legacy `Keep-Alive` and
/// `Proxy-Connection`); `Connection`'s listed names are removed as well.
fn fixed_hop_by_hop() -> [&'static HeaderName; 9] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHENTICATE,
        &header::PROXY_AUTHORIZATION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ]
}

/// Whether `Connection` lists `token` (case-insensitive).
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Removes the headers `Connection` names, then the fixed hop-by-hop list.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them: one look at each name present is cheaper than nine
    // hashed removals.
    let fixed = fixed_hop_by_hop();
    if !headers.keys().any(|name| fixed.contains(&name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in fixed {
        headers.remove(name);
    }
}

/// The `Upgrade` value of an HTTP/1.1 WebSocket upgrade request (`Connection: upgrade` +
/// `Upgrade: websocket`). Any other protocol (`h2c`, ...) is no upgrade: its headers are
/// hop-by-hop and go.
pub fn upgrade_request(headers: &HeaderMap) -> Option<HeaderValue> {
    if !connection_has(headers, "upgrade") || !is_websocket_upgrade(headers) {
        return None;
    }
    headers.get(header::UPGRADE).cloned()
}

/// Whether `Upgrade` names exactly the WebSocket protocol (RFC 6455 §4.1, case-insensitive).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::UPGRADE).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"),
        _ => false,
    }
}

/// Removes what a client says about where it connects from (`X-Forwarded-For`, `X-Real-IP`,
/// `X-Forwarded-Proto`): from a peer that may not speak for clients, such headers are noise
/// at best and a forged client address at worst.
pub fn remove_forwarding(headers: &mut HeaderMap) {
    for name in [&X_FORWARDED_FOR, &X_REAL_IP, &X_FORWARDED_PROTO] {
        headers.remove(name);
    }
}

/// Joins several `cookie` fields into one, separated by `; ` (RFC 9113 §8.2.3): an HTTP/2
/// client may split its cookies into fields that an HTTP/1.1 upstream expects in one line.
pub fn merge_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let joined: Vec<&[u8]> = headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
        headers.insert(header::COOKIE, value);
    }
}

/// `host` without its port (nginx `$host`), IPv6 literals kept bracketed.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').and_then(|i| host.get(..=i)).unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// What a profile needs to know about the request.
#[derive(Clone)]
pub struct Forwarding<'a> {
    /// The client's address as header text ([`peer_value`]).
    pub peer: &'a HeaderValue,
    /// The client's `Host` (or HTTP/2 `:authority`), if any.
    pub client_host: Option<&'a str>,
    /// `host:port` of the upstream as the route names it (nginx `$proxy_host`), computed
    /// only when the profile uses it (not for a proxied request with a client `Host`).
    pub upstream_host: &'a dyn Fn() -> String,
    /// The client's `Upgrade` value when the request is a permitted upgrade.
    pub upgrade: Option<HeaderValue>,
    /// `http` or `https`: how the client reached the gateway (`X-Forwarded-Proto`).
    pub scheme: &'static str,
}

impl std::fmt::Debug for Forwarding<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarding")
            .field("peer", &self.peer)
            .field("client_host", &self.client_host)
            .field("upgrade", &self.upgrade)
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name.clone(), v);
    }
}

/// The client's address as `X-Real-IP` shows it (an IPv4-mapped IPv6 address as IPv4);
/// computed once per connection.
pub fn peer_value(ip: IpAddr) -> HeaderValue {
    HeaderValue::try_from(ip.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Rewrites a request's headers (already free of hop-by-hop headers) for `profile`.
pub fn apply_profile(headers: &mut HeaderMap, profile: HeaderProfile, fwd: &Forwarding<'_>) {
    let client_host = fwd
        .client_host
        .map(host_without_port)
        .filter(|h| !h.is_empty());
    match (profile, client_host) {
        // A client `Host` field that already reads `host` (no port) is kept as it is.
        (HeaderProfile::Proxy, Some(host)) => {
            if headers
                .get(header::HOST)
                .is_none_or(|v| v.as_bytes() != host.as_bytes())
            {
                set(headers, &header::HOST, host);
            }
        }
        _ => set(headers, &header::HOST, &(fwd.upstream_host)()),
    }
    if !headers.contains_key(header::HOST) {
        // Every upstream request names its host; the route's own name always fits.
        set(headers, &header::HOST, &(fwd.upstream_host)());
    }
    if profile == HeaderProfile::Plain {
        return;
    }
    headers.insert(X_REAL_IP.clone(), fwd.peer.clone());
    // nginx `$proxy_add_x_forwarded_for`: the client's list, then the peer.
    let previous: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if previous.is_empty() {
        headers.insert(X_FORWARDED_FOR.clone(), fwd.peer.clone());
    } else {
        let peer = fwd.peer.to_str().unwrap_or("unknown");
        let xff = format!("{}, {peer}", previous.join(", "));
        set(headers, &X_FORWARDED_FOR, &xff);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.scheme),
    );
    if let Some(upgrade) = &fwd.upgrade {
        headers.insert(header::UPGRADE, upgrade.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Cleans an upstream response's headers: hop-by-hop (kept for a 101, whose `Upgrade` and
/// `Connection` the client needs) and `Server` go; 2xx/3xx get the original's
/// `X-Frame-Options: SAMEORIGIN` and `X-XSS-Protection: 1; mode=block` unless set.
pub fn clean_response(headers: &mut HeaderMap, status: http::StatusCode) {
    if status != http::StatusCode::SWITCHING_PROTOCOLS {
        remove_hop_by_hop(headers);
    }
    headers.remove(header::SERVER);
    if status.is_success() || status.is_redirection() {
        headers
            .entry(X_FRAME_OPTIONS.clone())
            .or_insert(HeaderValue::from_static("SAMEORIGIN"));
        headers
            .entry(X_XSS_PROTECTION.clone())
            .or_insert(HeaderValue::from_static("1; mode=block"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                h.append(k, v);
            }
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "x"),
            ("abcauthorization", "Bearer t"),
            ("origin", "http://o"),
        ]);
        remove_hop_by_hop(&mut h);
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["abcauthorization", "origin"]);
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(upgrade_request(&map(&[("upgrade", "websocket")])).is_none());
        assert!(
            upgrade_request(&map(&[
                ("connection", "keep-alive, Upgrade"),
                ("upgrade", "websocket")
            ]))
            .is_some()
        );
    }

    #[test]
    fn only_websocket_is_an_upgrade() {
        let upgrade = |value| {
            upgrade_request(&map(&[("connection", "Upgrade"), ("upgrade", value)])).is_some()
        };
        assert!(upgrade("websocket") && upgrade("WebSocket"));
        assert!(!upgrade("h2c") && !upgrade("websocket, h2c") && !upgrade("tls/1.0"));
    }

    #[test]
    fn split_cookies_become_one_field() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2"), ("cookie", "c=3")]);
        merge_cookies(&mut h);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut h = map(&[("cookie", "a=1")]);
        merge_cookies(&mut h);
        assert_eq!(h["cookie"], "a=1");
    }

    #[test]
    fn host_port_is_removed() {
        assert_eq!(host_without_port("a.b:8080"), "a.b");
        assert_eq!(host_without_port("a.b"), "a.b");
        assert_eq!(host_without_port("[::1]:80"), "[::1]");
    }

    #[test]
    fn proxy_profile_sets_forwarding_headers() {
        let mut h = map(&[("x-forwarded-for", "1.1.1.1"), ("origin", "http://o")]);
        let peer = peer_value(IpAddr::from([10, 0, 0, 1]));
        let fwd = Forwarding {
            peer: &peer,
            client_host: Some("desk.example:30443"),
            upstream_host: &|| "pyos:8000".to_owned(),
            upgrade: None,
            scheme: "http",
        };
        apply_profile(&mut h, HeaderProfile::Proxy, &fwd);
        assert_eq!(h["host"], "desk.example");
        assert_eq!(h["x-real-ip"], "10.0.0.1");
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["origin"], "http://o");

        let mut h = HeaderMap::new();
        apply_profile(&mut h, HeaderProfile::Plain, &fwd);
        assert_eq!(h["host"], "pyos:8000");
        assert!(h.get("x-forwarded-for").is_none());

        // An IPv4-mapped client shows as IPv4; a Host that cannot be kept falls back to the
        // upstream's name.
        let mapped = peer_value("::ffff:10.1.2.3".parse().unwrap());
        assert_eq!(mapped, "10.1.2.3");
        let mut h = HeaderMap::new();
        let fwd = Forwarding {
            peer: &mapped,
            client_host: Some("bad host\u{7f}"),
            ..fwd
        };
        apply_profile(&mut h, HeaderProfile::Proxy, &fwd);
        assert_eq!(h["host"], "pyos:8000");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
    }

    #[test]
    fn responses_lose_server_and_gain_frame_options_on_success_only() {
        let mut h = map(&[("server", "nginx"), ("connection", "close")]);
        clean_response(&mut h, http::StatusCode::OK);
        assert!(h.get("server").is_none() && h.get("connection").is_none());
        assert_eq!(h["x-frame-options"], "SAMEORIGIN");
        let mut h = HeaderMap::new();
        clean_response(&mut h, http::StatusCode::NOT_FOUND);
        assert!(h.get("x-frame-options").is_none());
    }
}

//! abcdesktop's route table, as data, and nginx's location-matching rules over it.
//!
//! The table is the union of what oc.nginx 3.0–3.2 and route 3.3–4.x serve (compat doc §1.2–1.5):
//! each [`Route`] says how a location matches, where its token comes from, where it goes, how
//! the upstream URI is built, which header profile applies (§1.7), its timeouts, its body limit
//! and whether it may carry a WebSocket. `[routes.<name>]` in the config overrides a route's
//! port, timeouts, body limit, or disables it.
//!
//! Routes match on the path as nginx normalizes it ([`RequestPath`]: escapes decoded, slashes
//! merged, `.`/`..` resolved, what nginx refuses refused), and [`Matched::upstream_uri`] builds
//! the URI nginx would send for each route's `proxy_pass` form (module `normalize`).
//!
//! Matching follows nginx (§1.1): exact locations first; otherwise the longest prefix is
//! remembered; then regexes are tried in table order and the first match wins over that
//! prefix (no abcdesktop location uses `^~`). The `/container` and `/terminals/x/size`
//! regexes are unanchored, like the original's.
//!
//! Deliberate differences from the original, each safe for pyos and the web client:
//! - `/container/<jwt>/<port>…` and `/container/<port>` only reach ports in an allow-list
//!   (default: the pod's service ports); other ports get 404 before any token work;
//! - `/console/x` and `/speedtest/x` go upstream as `/x` (route 3.3's rewrite) rather than
//!   route 4.0's `//x`;
//! - `/` always uses the `proxy.conf` headers (route 3.5) and `/container/<jwt>/<port>/<rest>`
//!   always sends `/<rest>` plus the query, even when the match is not at the path's start.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::{Regex, RegexSet};
use serde::Deserialize;

use crate::token::TokenSource;

mod normalize;

pub use normalize::{InvalidPath, RequestPath};

/// The pod's service ports: pulseaudio, websockify and 29780–29790 (§1.6).
pub const DEFAULT_CONTAINER_PORTS: [u16; 13] = [
    4714, 6081, 29780, 29781, 29782, 29783, 29784, 29785, 29786, 29787, 29788, 29789, 29790,
];
/// nginx's `client_max_body_size` default.
pub const DEFAULT_BODY_LIMIT: u64 = 1024 * 1024;
/// nginx's default `proxy_read_timeout` / `proxy_send_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The PCM sound locations of oc.nginx 3.x (`sound.conf`), each proxied to pulseaudio's
/// `/listen/source/<name>.monitor`.
pub const PCM_SOUND_PATHS: [&str; 8] = [
    "u8_1_11025",
    "s16_1_11025",
    "u8_1_22050",
    "s16_1_22050",
    "u8_1_44100",
    "s16_1_44100",
    "ulaw8_1_8000",
    "alaw8_1_8000",
];

/// How a location matches a path.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// `location = /x`.
    Exact(String),
    /// `location /x` (plain prefix).
    Prefix(String),
    /// `location ~ re` (case-sensitive regex). Named groups `token`, `port` and `rest` feed
    /// the `/container` routes.
    Regex(Regex),
}

/// A named upstream service, resolved at request time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceName {
    /// pyos (`PYOS_FQDN`:`PYOS_SERVICE_PORT`).
    Pyos,
    /// speedtest.
    Speedtest,
    /// console.
    Console,
    /// website.
    Website,
}

/// Which port of the token's desktop a route reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRule {
    /// A fixed pod port.
    Fixed(u16),
    /// The `port` group of the matching regex, checked against the allow-list.
    FromPath,
}

/// Where a route goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The desktop the token names.
    Desktop(PortRule),
    /// A named service.
    Service(ServiceName),
    /// Files from `website.static_dir`.
    Static,
    /// `= /healthz` → `OK\n`.
    Healthz,
    /// `= /node` → node name + `\n`.
    Node,
}

/// How the upstream request's path and query are built (§1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UriRule {
    /// `proxy_pass http://h:p;`: the original path and query.
    Keep,
    /// `proxy_pass http://h:p/;` with a regex or exact location: `/`, query dropped.
    Root,
    /// `/prefix/x?q` → `/x?q`, `/prefix` → `/`.
    StripPrefix(String),
    /// A fixed path, query dropped (PCM sound).
    Fixed(String),
    /// `/<rest>` from the container regex, plus the original query.
    ContainerRest,
}

/// Which headers go upstream (§1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderProfile {
    /// `proxy.conf`: `Host: $host`, `X-Real-IP`, `X-Forwarded-For`, `X-Forwarded-Proto`.
    Proxy,
    /// `ws.conf`: `Host: <upstream>`, `X-Real-IP`, `X-Forwarded-For`, `X-Forwarded-Proto`,
    /// `Upgrade`/`Connection` passed for upgrades.
    Ws,
    /// No directives: `Host: <upstream>`, client headers as they are.
    Plain,
}

/// One location.
#[derive(Debug, Clone)]
pub struct Route {
    /// Stable name, used by `[routes.<name>]` and in logs.
    pub name: String,
    /// How it matches.
    pub matcher: Matcher,
    /// Where its token comes from; `None` = unauthenticated.
    pub token: Option<TokenSource>,
    /// Where it goes.
    pub upstream: Upstream,
    /// How the upstream URI is built.
    pub uri: UriRule,
    /// Header profile.
    pub headers: HeaderProfile,
    /// Whether an `Upgrade` (WebSocket) may pass.
    pub websocket: bool,
    /// Largest request body, in bytes.
    pub body_limit: u64,
    /// Time to the upstream's response head; also the idle limit of an upgraded tunnel.
    pub read_timeout: Duration,
    /// Idle limit while sending the request body upstream.
    pub send_timeout: Duration,
}

/// `[routes.<name>]`: what the config may change on a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteOverride {
    /// `false` removes the route.
    pub enabled: Option<bool>,
    /// The pod port (desktop routes with a fixed port only).
    pub port: Option<u16>,
    /// See [`Route::read_timeout`].
    #[serde(default, with = "crate::units::opt_duration")]
    pub read_timeout: Option<Duration>,
    /// See [`Route::send_timeout`].
    #[serde(default, with = "crate::units::opt_duration")]
    pub send_timeout: Option<Duration>,
    /// See [`Route::body_limit`] (`"8M"`, `"8G"` or bytes).
    #[serde(default, with = "crate::units::opt_size")]
    pub body_limit: Option<u64>,
}

/// The result of matching a path.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'r, 'a> {
    /// The route.
    pub route: &'r Route,
    /// The regex's `token` group (the `/container/<jwt>/<port>` routes' token segment).
    pub token: Option<&'a str>,
    /// The regex's `port` group.
    pub port: Option<&'a str>,
    /// The regex's `rest` group.
    pub rest: Option<&'a str>,
}

/// The whole table.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    container_ports: Vec<u16>,
    index: Index,
}

/// Where [`RouteTable::find`] looks, built once with the table so that a request compares its
/// path with the few routes that could match it rather than with every route.
#[derive(Debug, Clone)]
struct Index {
    /// Exact locations' paths, sorted, with their route.
    exact: Vec<(String, usize)>,
    /// Prefix locations of two bytes or more by their second byte (the one after the leading
    /// `/`), longest first: only those can be a prefix of a path with that second byte.
    prefixes: Vec<Vec<usize>>,
    /// Prefix locations shorter than two bytes (`/`), longest first.
    short_prefixes: Vec<usize>,
    /// Regex locations, in table order.
    regexes: Vec<usize>,
    /// All of them at once: one scan tells whether any matches (most paths match none).
    /// `None` had the set not compiled (each pattern did alone): then each is tried.
    any_regex: Option<RegexSet>,
}

impl Index {
    fn new(routes: &[Route]) -> Self {
        let mut index = Index {
            exact: Vec::new(),
            prefixes: vec![Vec::new(); 256],
            short_prefixes: Vec::new(),
            regexes: Vec::new(),
            any_regex: None,
        };
        for (i, route) in routes.iter().enumerate() {
            match &route.matcher {
                Matcher::Exact(p) => index.exact.push((p.clone(), i)),
                Matcher::Prefix(p) => match p.as_bytes().get(1) {
                    Some(&b) => index.prefixes[usize::from(b)].push(i),
                    None => index.short_prefixes.push(i),
                },
                Matcher::Regex(_) => index.regexes.push(i),
            }
        }
        // The first of equal exact paths wins, as in table order; of equally long prefixes
        // the last (nginx would refuse such a table; the old scan kept the last).
        index
            .exact
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        index.exact.dedup_by(|later, first| later.0 == first.0);
        let prefix_len = |i: &usize| match &routes[*i].matcher {
            Matcher::Prefix(p) => p.len(),
            _ => 0,
        };
        for bucket in index.prefixes.iter_mut().chain([&mut index.short_prefixes]) {
            bucket.sort_by(|a, b| prefix_len(b).cmp(&prefix_len(a)).then(b.cmp(a)));
        }
        let patterns = index
            .regexes
            .iter()
            .filter_map(|&i| match &routes[i].matcher {
                Matcher::Regex(re) => Some(re.as_str()),
                _ => None,
            });
        index.any_regex = RegexSet::new(patterns).ok();
        index
    }
}

// === impl Route ===

struct Spec {
    name: &'static str,
    matcher: Matcher,
    token: Option<TokenSource>,
    upstream: Upstream,
    uri: UriRule,
    headers: HeaderProfile,
    websocket: bool,
    body_limit: u64,
    read: u64,
    send: u64,
}

impl Spec {
    fn new(name: &'static str, matcher: Matcher, upstream: Upstream) -> Self {
        Spec {
            name,
            matcher,
            token: None,
            upstream,
            uri: UriRule::Keep,
            headers: HeaderProfile::Plain,
            websocket: false,
            body_limit: DEFAULT_BODY_LIMIT,
            read: 60,
            send: 60,
        }
    }
    fn token(mut self, source: TokenSource) -> Self {
        self.token = Some(source);
        self
    }
    fn uri(mut self, uri: UriRule) -> Self {
        self.uri = uri;
        self
    }
    fn headers(mut self, headers: HeaderProfile) -> Self {
        self.headers = headers;
        self
    }
    /// A `ws.conf` location.
    fn ws(mut self, read: u64, send: u64) -> Self {
        self.headers = HeaderProfile::Ws;
        self.websocket = true;
        self.read = read;
        self.send = send;
        self
    }
    fn body(mut self, limit: u64) -> Self {
        self.body_limit = limit;
        self
    }
    fn read(mut self, secs: u64) -> Self {
        self.read = secs;
        self
    }
    fn build(self) -> Route {
        Route {
            name: self.name.to_owned(),
            matcher: self.matcher,
            token: self.token,
            upstream: self.upstream,
            uri: self.uri,
            headers: self.headers,
            websocket: self.websocket,
            body_limit: self.body_limit,
            read_timeout: Duration::from_secs(self.read),
            send_timeout: Duration::from_secs(self.send),
        }
    }
}

fn exact(p: &str) -> Matcher {
    Matcher::Exact(p.to_owned())
}
fn prefix(p: &str) -> Matcher {
    Matcher::Prefix(p.to_owned())
}
fn regex(re: &str) -> Result<Matcher, (String, String)> {
    Regex::new(re)
        .map(Matcher::Regex)
        .map_err(|e| ("routes".to_owned(), e.to_string()))
}
fn desktop(port: u16) -> Upstream {
    Upstream::Desktop(PortRule::Fixed(port))
}

const MIB: u64 = 1024 * 1024;

/// The built-in table, in nginx file order (the order matters for regexes only).
fn builtin(static_site: bool) -> Result<Vec<Route>, (String, String)> {
    use HeaderProfile::Proxy;
    use TokenSource::{ContainerPath, Header, Query, RawQuery};
    let mut specs = vec![
        Spec::new("healthz", exact("/healthz"), Upstream::Healthz),
        Spec::new("node", exact("/node"), Upstream::Node),
        Spec::new("websockify", exact("/websockify"), desktop(6081))
            .token(Query)
            .uri(UriRule::Root)
            .ws(3600, 3600),
        Spec::new("signalling", exact("/signalling"), desktop(29787))
            .token(Query)
            .uri(UriRule::Root)
            .ws(60, 60),
        Spec::new(
            "container-path",
            regex(r"/container/(?P<token>[^/]+)/(?P<port>[0-9]+)/(?P<rest>.*)")?,
            Upstream::Desktop(PortRule::FromPath),
        )
        .token(ContainerPath)
        .uri(UriRule::ContainerRest)
        .headers(Proxy),
        Spec::new(
            "container-root",
            regex(r"/container/(?P<token>[^/]+)/(?P<port>[0-9]+)")?,
            Upstream::Desktop(PortRule::FromPath),
        )
        .token(ContainerPath)
        .uri(UriRule::Root)
        .headers(Proxy),
        Spec::new(
            "container-port",
            // PCRE's `$` also matches before a final newline (an escaped `%0A`).
            regex(r"/container/(?P<port>[0-9]+)\n?\z")?,
            Upstream::Desktop(PortRule::FromPath),
        )
        .token(Header)
        .headers(Proxy),
        Spec::new(
            "terminal-size",
            regex(r"/terminals/(.*)/size")?,
            desktop(29781),
        )
        .token(Header),
        // 4.4 (README only): pyos special cases, ahead of the general pyos regex.
        Spec::new(
            "pyos-manager-image",
            regex(r"^/API/manager/image")?,
            Upstream::Service(ServiceName::Pyos),
        )
        .headers(Proxy)
        .read(360)
        .body(16 * MIB),
        Spec::new(
            "pyos-launchdesktop",
            regex(r"^/API/composer/launchdesktop")?,
            Upstream::Service(ServiceName::Pyos),
        )
        .headers(Proxy)
        .read(600),
        Spec::new(
            "pyos",
            regex(r"^/(moauth|fauth|gauth|oauth|autologin|API|status)")?,
            Upstream::Service(ServiceName::Pyos),
        )
        .headers(Proxy)
        .read(360),
        Spec::new("spawner", prefix("/spawner"), desktop(29786))
            .token(Header)
            .headers(Proxy)
            .body(8 * MIB),
        Spec::new("terminals-ws", prefix("/terminals/"), desktop(29781))
            .token(RawQuery)
            .ws(1800, 1800),
        Spec::new("terminals", prefix("/terminals"), desktop(29781)).token(Header),
        Spec::new("filer", prefix("/filer"), desktop(29783))
            .token(Header)
            .body(8 * 1024 * MIB),
        Spec::new("printerfiler", prefix("/printerfiler"), desktop(29782)).token(Header),
        Spec::new("broadcast", prefix("/broadcast"), desktop(29784))
            .token(Query)
            .ws(1800, 60),
        Spec::new("sound", prefix("/sound"), desktop(29788))
            .token(Query)
            .uri(UriRule::Root)
            .ws(60, 60),
        Spec::new("microphone", prefix("/microphone"), desktop(29789))
            .token(Query)
            .uri(UriRule::Root)
            .ws(60, 60),
        // 4.4 (README only): token source and URI rule assumed to be sound's.
        Spec::new("gamepad", prefix("/gamepad"), desktop(29790))
            .token(Query)
            .uri(UriRule::Root)
            .ws(60, 60),
        // 4.4 (README only): the web client sends `ABCAuthorization` to `/snapshot/<endpoint>`.
        Spec::new("snapshot", prefix("/snapshot"), desktop(29785)).token(Header),
        Spec::new(
            "speedtest",
            prefix("/speedtest"),
            Upstream::Service(ServiceName::Speedtest),
        )
        .uri(UriRule::StripPrefix("/speedtest".to_owned()))
        .body(256 * MIB),
        Spec::new(
            "img-app",
            prefix("/img/app/"),
            Upstream::Service(ServiceName::Pyos),
        )
        .headers(Proxy),
        Spec::new(
            "console",
            prefix("/console"),
            Upstream::Service(ServiceName::Console),
        )
        .uri(UriRule::StripPrefix("/console".to_owned()))
        .headers(Proxy),
        Spec::new(
            "website",
            prefix("/"),
            if static_site {
                Upstream::Static
            } else {
                Upstream::Service(ServiceName::Website)
            },
        )
        .headers(Proxy),
    ];
    for name in PCM_SOUND_PATHS {
        specs.push(
            Spec::new(name, Matcher::Prefix(format!("/{name}")), desktop(4714))
                .token(Header)
                .uri(UriRule::Fixed(format!("/listen/source/{name}.monitor"))),
        );
    }
    Ok(specs.into_iter().map(Spec::build).collect())
}

// === impl RouteTable ===

impl RouteTable {
    /// The abcdesktop table with `overrides` applied. Errors name the offending key.
    pub fn abcdesktop(
        container_ports: Vec<u16>,
        static_site: bool,
        overrides: &BTreeMap<String, RouteOverride>,
    ) -> Result<Self, (String, String)> {
        let mut routes = builtin(static_site)?;
        for (name, o) in overrides {
            let key = format!("routes.{name}");
            let Some(route) = routes.iter_mut().find(|r| &r.name == name) else {
                return Err((key, "no route has this name".to_owned()));
            };
            if let Some(port) = o.port {
                match &mut route.upstream {
                    Upstream::Desktop(PortRule::Fixed(p)) => *p = port,
                    _ => return Err((key, "`port` applies to fixed-port desktop routes".into())),
                }
            }
            if let Some(t) = o.read_timeout {
                route.read_timeout = t;
            }
            if let Some(t) = o.send_timeout {
                route.send_timeout = t;
            }
            if let Some(b) = o.body_limit {
                route.body_limit = b;
            }
        }
        routes.retain(|r| overrides.get(&r.name).and_then(|o| o.enabled) != Some(false));
        let index = Index::new(&routes);
        Ok(RouteTable {
            routes,
            container_ports,
            index,
        })
    }

    /// Every route, in table order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Whether `/container` may reach `port`.
    pub fn container_port_allowed(&self, port: u16) -> bool {
        self.container_ports.contains(&port)
    }

    /// The route for `path`, by nginx's rules (see the module docs).
    pub fn find<'r, 'a>(&'r self, path: &'a str) -> Option<Matched<'r, 'a>> {
        let plain = |route: &'r Route| Matched {
            route,
            token: None,
            port: None,
            rest: None,
        };
        let index = &self.index;
        if let Ok(at) = index.exact.binary_search_by(|(p, _)| p.as_str().cmp(path)) {
            return Some(plain(&self.routes[index.exact[at].1]));
        }
        let is_prefix = |i: &&usize| match &self.routes[**i].matcher {
            Matcher::Prefix(p) => path.starts_with(p.as_str()),
            _ => false,
        };
        let bucket = path
            .as_bytes()
            .get(1)
            .map_or(&[][..], |&b| &index.prefixes[usize::from(b)]);
        let longest_prefix = bucket
            .iter()
            .find(is_prefix)
            .or_else(|| index.short_prefixes.iter().find(is_prefix))
            .map(|&i| &self.routes[i]);
        let regexes = match &index.any_regex {
            Some(set) if !set.is_match(path) => &[][..],
            _ => &index.regexes[..],
        };
        for &i in regexes {
            let route = &self.routes[i];
            let Matcher::Regex(re) = &route.matcher else {
                continue;
            };
            // A plain match test first: it allocates nothing, and most regexes miss.
            if !re.is_match(path) {
                continue;
            }
            if let Some(caps) = re.captures(path) {
                return Some(Matched {
                    route,
                    token: caps.name("token").map(|m| m.as_str()),
                    port: caps.name("port").map(|m| m.as_str()),
                    rest: caps.name("rest").map(|m| m.as_str()),
                });
            }
        }
        longest_prefix.map(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::abcdesktop(DEFAULT_CONTAINER_PORTS.to_vec(), false, &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn name(t: &RouteTable, path: &str) -> Option<String> {
        t.find(path).map(|m| m.route.name.clone())
    }

    #[test]
    fn exact_locations_win_and_only_match_exactly() {
        let t = table();
        assert_eq!(name(&t, "/healthz").as_deref(), Some("healthz"));
        assert_eq!(name(&t, "/node").as_deref(), Some("node"));
        assert_eq!(name(&t, "/websockify").as_deref(), Some("websockify"));
        assert_eq!(name(&t, "/signalling").as_deref(), Some("signalling"));
        // Not exact: falls to `/`.
        assert_eq!(name(&t, "/websockify/x").as_deref(), Some("website"));
        assert_eq!(name(&t, "/healthzz").as_deref(), Some("website"));
    }

    /// nginx's rules read plainly, route by route over the whole table: what the index must
    /// agree with.
    fn scan<'r>(t: &'r RouteTable, path: &str) -> Option<&'r Route> {
        let routes = t.routes();
        if let Some(r) = routes
            .iter()
            .find(|r| matches!(&r.matcher, Matcher::Exact(p) if p == path))
        {
            return Some(r);
        }
        let longest_prefix = routes
            .iter()
            .filter_map(|r| match &r.matcher {
                Matcher::Prefix(p) if path.starts_with(p.as_str()) => Some((p.len(), r)),
                _ => None,
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, r)| r);
        routes
            .iter()
            .find(|r| matches!(&r.matcher, Matcher::Regex(re) if re.is_match(path)))
            .or(longest_prefix)
    }

    #[test]
    fn the_index_finds_what_a_scan_of_every_route_finds() {
        let mut tables = vec![
            table(),
            RouteTable::abcdesktop(DEFAULT_CONTAINER_PORTS.to_vec(), true, &BTreeMap::new())
                .unwrap_or_else(|e| panic!("{e:?}")),
        ];
        let off = |name: &str| {
            let o = RouteOverride {
                enabled: Some(false),
                ..RouteOverride::default()
            };
            BTreeMap::from([(name.to_owned(), o)])
        };
        for name in ["website", "healthz", "spawner", "container-path"] {
            tables.push(
                RouteTable::abcdesktop(DEFAULT_CONTAINER_PORTS.to_vec(), false, &off(name))
                    .unwrap_or_else(|e| panic!("{e:?}")),
            );
        }
        // Every location's own text, cut short, run on and varied, beside odd paths.
        let mut paths: Vec<String> = ["", "/", "//", "/x", "/a/b", "/\u{e9}t\u{e9}", "/%2F"]
            .iter()
            .map(|p| (*p).to_owned())
            .collect();
        for route in tables[0].routes().iter().chain(tables[1].routes()) {
            let text = match &route.matcher {
                Matcher::Exact(p) | Matcher::Prefix(p) => p.clone(),
                Matcher::Regex(re) => re.as_str().replace(['^', '\\', '?', '(', ')'], ""),
            };
            for cut in 0..=text.len() {
                if let Some(head) = text.get(..cut) {
                    paths.push(head.to_owned());
                }
            }
            for tail in ["/", "x", "/1/size", "/tok/29786/rest", "/6081", "?q"] {
                paths.push(format!("{text}{tail}"));
                paths.push(format!("/pre{text}{tail}"));
            }
        }
        let mut checked = 0;
        for t in &tables {
            for path in &paths {
                let found = t.find(path).map(|m| m.route.name.as_str());
                let expected = scan(t, path).map(|r| r.name.as_str());
                assert_eq!(found, expected, "{path:?}");
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked}");
    }

    #[test]
    fn terminals_three_ways() {
        let t = table();
        assert_eq!(name(&t, "/terminals/123").as_deref(), Some("terminals-ws"));
        assert_eq!(
            name(&t, "/terminals/123/size").as_deref(),
            Some("terminal-size")
        );
        assert_eq!(name(&t, "/terminals").as_deref(), Some("terminals"));
        // The size regex is unanchored, like the original's.
        assert_eq!(
            name(&t, "/x/terminals/1/size").as_deref(),
            Some("terminal-size")
        );
    }

    #[test]
    fn container_regexes_in_file_order_and_unanchored() {
        let t = table();
        let m = t.find("/container/tok/29786/spawner/x");
        assert_eq!(m.map(|m| m.route.name.as_str()), Some("container-path"));
        assert_eq!(m.and_then(|m| m.port), Some("29786"));
        assert_eq!(m.and_then(|m| m.rest), Some("spawner/x"));
        assert_eq!(
            name(&t, "/container/tok/29786").as_deref(),
            Some("container-root")
        );
        assert_eq!(
            name(&t, "/container/6081").as_deref(),
            Some("container-port")
        );
        assert_eq!(name(&t, "/container/6081/").as_deref(), Some("website"));
        // Regexes win over a matching prefix (here `/filer`), as in nginx.
        let m = t.find("/filer/container/tok/1/y");
        assert_eq!(m.map(|m| m.route.name.as_str()), Some("container-path"));
        assert_eq!(m.and_then(|m| m.token), Some("tok"));
    }

    #[test]
    fn pyos_regex_is_anchored_at_the_start_only() {
        let t = table();
        for p in [
            "/API/x",
            "/APIxyz",
            "/status.html",
            "/oauth",
            "/autologin?x",
        ] {
            assert_eq!(name(&t, p).as_deref(), Some("pyos"), "{p}");
        }
        assert_eq!(name(&t, "/x/API").as_deref(), Some("website"));
        let image = t.find("/API/manager/image?x").map(|m| m.route.body_limit);
        assert_eq!(image, Some(16 * MIB));
        let launch = t
            .find("/API/composer/launchdesktop")
            .map(|m| m.route.read_timeout);
        assert_eq!(launch, Some(Duration::from_secs(600)));
        assert_eq!(
            name(&t, "/API/manager/images").as_deref(),
            Some("pyos-manager-image")
        );
        assert_eq!(name(&t, "/img/app/a.svg").as_deref(), Some("img-app"));
    }

    #[test]
    fn longest_prefix_wins_among_prefixes() {
        let t = table();
        for (p, n) in [
            ("/spawner/getproclist", "spawner"),
            ("/filer?file=a", "filer"),
            ("/printerfiler", "printerfiler"),
            ("/broadcast", "broadcast"),
            ("/sound", "sound"),
            ("/microphone", "microphone"),
            ("/gamepad", "gamepad"),
            ("/snapshot/x", "snapshot"),
            ("/speedtest/x", "speedtest"),
            ("/console", "console"),
            ("/u8_1_11025", "u8_1_11025"),
            ("/s16_1_44100", "s16_1_44100"),
            ("/", "website"),
            ("/index.html", "website"),
        ] {
            assert_eq!(name(&t, p).as_deref(), Some(n), "{p}");
        }
    }

    #[test]
    fn overrides_apply_and_unknown_names_are_refused() {
        let mut o = BTreeMap::new();
        o.insert(
            "spawner".to_owned(),
            RouteOverride {
                port: Some(1234),
                body_limit: Some(10),
                ..Default::default()
            },
        );
        o.insert(
            "gamepad".to_owned(),
            RouteOverride {
                enabled: Some(false),
                ..Default::default()
            },
        );
        let t = RouteTable::abcdesktop(vec![], false, &o).unwrap_or_else(|e| panic!("{e:?}"));
        let spawner = t.find("/spawner").map(|m| m.route.clone());
        assert_eq!(
            spawner.as_ref().map(|r| r.upstream),
            Some(Upstream::Desktop(PortRule::Fixed(1234)))
        );
        assert_eq!(spawner.map(|r| r.body_limit), Some(10));
        assert_eq!(name(&t, "/gamepad").as_deref(), Some("website"));

        let mut bad = BTreeMap::new();
        bad.insert("nope".to_owned(), RouteOverride::default());
        assert!(RouteTable::abcdesktop(vec![], false, &bad).is_err());
        let mut bad = BTreeMap::new();
        bad.insert(
            "pyos".to_owned(),
            RouteOverride {
                port: Some(1),
                ..Default::default()
            },
        );
        assert!(RouteTable::abcdesktop(vec![], false, &bad).is_err());
    }
}

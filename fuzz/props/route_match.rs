//! `route_match`: `RouteTable::abcdesktop(…).find(path)` on arbitrary paths and tables.
//!
//! Input: a table byte (bit 0: static site; bit 1: a chosen container-port allow-list, else
//! the default list and bits 2–7 name a route to disable, by index + 1), the allow-list when
//! chosen (a byte: a subset of [`PORT_CHOICES`]), then the path. Tables are built once per
//! distinct choice (building one compiles its regexes), so the choices are kept few.
//!
//! Properties:
//! - `find` is a function (the same answer twice) and follows nginx's precedence, checked from
//!   the table's own data: an exact location equal to the path wins; else the first regex in
//!   table order that matches; else the longest matching prefix; `None` only when nothing
//!   matches; a disabled route is never chosen;
//! - a `port` is all ASCII digits and present exactly for the routes that take their port from
//!   the path; `ContainerRest` routes always have `rest`; a `token` is present exactly for the
//!   routes that take their token from the path, is non-empty, holds no `/`, and the path
//!   holds `/container/<token>/<port>`;
//! - the upstream the proxy would reach uses the route's fixed port or a path port that is in
//!   the configured allow-list (`container_port_allowed` agrees with the list it was given);
//! - the rewritten upstream URI (the README's rules) of a path starting with `/` starts with
//!   `/`, a stripped prefix never leaves `//`, and for a path hyper accepts it forms a valid
//!   URI with the pod's authority;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use gateway::routes::{
    self, Matched, Matcher, PortRule, RouteOverride, RouteTable, Upstream, UriRule,
};

use super::common::Input;

/// Ports a chosen allow-list is made of: edges, pod ports and ports no pod has.
const PORT_CHOICES: [u16; 8] = [0, 22, 4714, 6081, 29781, 29786, 29790, u16::MAX];
/// Tables kept at most (each holds compiled regexes).
const MAX_TABLES: usize = 128;

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let static_site = flags & 1 == 1;
    let (ports, disable) = if flags & 2 == 2 {
        let subset = input.byte();
        let ports = (0..8)
            .filter(|bit| subset & (1 << bit) != 0)
            .map(|bit| PORT_CHOICES[bit])
            .collect();
        (ports, None)
    } else {
        let disable = usize::from(flags >> 2).checked_sub(1);
        (routes::DEFAULT_CONTAINER_PORTS.to_vec(), disable)
    };
    let path = String::from_utf8_lossy(input.rest());
    TABLES.with_borrow_mut(|tables| {
        if tables.len() >= MAX_TABLES {
            tables.clear();
        }
        let key = (static_site, ports.clone(), disable);
        let (table, disabled) = tables
            .entry(key)
            .or_insert_with(|| build(&ports, static_site, disable));
        check_path(table, disabled.as_ref(), &ports, &path);
    });
}

thread_local! {
    /// Tables already built, by (static site, allow-list, disabled route index).
    static TABLES: RefCell<HashMap<TableKey, (RouteTable, Option<String>)>> =
        RefCell::new(HashMap::new());
}

type TableKey = (bool, Vec<u16>, Option<usize>);

/// The table with the `disable`th built-in route turned off, and that route's name.
fn build(ports: &[u16], static_site: bool, disable: Option<usize>) -> (RouteTable, Option<String>) {
    let full = RouteTable::abcdesktop(ports.to_vec(), static_site, &BTreeMap::new())
        .expect("the built-in table");
    let mut overrides = BTreeMap::new();
    let disabled = disable
        .and_then(|i| full.routes().get(i))
        .map(|r| r.name.clone());
    if let Some(name) = &disabled {
        let off = RouteOverride {
            enabled: Some(false),
            ..RouteOverride::default()
        };
        overrides.insert(name.clone(), off);
    }
    let table = RouteTable::abcdesktop(ports.to_vec(), static_site, &overrides)
        .expect("disabling a built-in route");
    (table, disabled)
}

fn check_path(table: &RouteTable, disabled: Option<&String>, ports: &[u16], path: &str) {
    let first = table.find(path);
    let second = table.find(path);
    assert_eq!(
        summary(first.as_ref()),
        summary(second.as_ref()),
        "not a function"
    );
    assert_eq!(
        first.map(|m| m.route.name.clone()),
        by_precedence(table, path),
        "nginx precedence"
    );
    for port in ports
        .iter()
        .copied()
        .chain([0, 1, 80, 6081, 29786, u16::MAX])
    {
        assert_eq!(table.container_port_allowed(port), ports.contains(&port));
    }
    let Some(m) = first else {
        return;
    };
    let route = m.route;
    assert_ne!(Some(&route.name), disabled, "a disabled route matched");
    let from_path_token = route.token == Some(gateway::token::TokenSource::ContainerPath);
    assert_eq!(
        m.token.is_some(),
        from_path_token,
        "{}: token group",
        route.name
    );
    if let (Some(token), Some(port)) = (m.token, m.port) {
        assert!(
            !token.is_empty() && !token.contains('/'),
            "token spans segments"
        );
        assert!(
            path.contains(&format!("/container/{token}/{port}")),
            "token and port are not the path's"
        );
    }
    if let Some(port) = m.port {
        assert!(!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()));
    }
    let from_path = route.upstream == Upstream::Desktop(PortRule::FromPath);
    assert_eq!(m.port.is_some(), from_path, "{}: port group", route.name);
    if route.uri == UriRule::ContainerRest {
        assert!(m.rest.is_some(), "{}: no rest", route.name);
    }

    // The port the proxy would dial, as the README describes it (404 when not allowed).
    let port = match route.upstream {
        Upstream::Desktop(PortRule::Fixed(p)) => Some(p),
        Upstream::Desktop(PortRule::FromPath) => m
            .port
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| table.container_port_allowed(*p)),
        _ => None,
    };
    if let (Some(p), true) = (port, from_path) {
        assert!(ports.contains(&p), "path port {p} outside the allow-list");
    }

    // For a path hyper would have accepted (the only paths the proxy sees): the regex's `.*`
    // stops at a newline, which no such path holds.
    let valid_path = format!("http://gateway{path}")
        .parse::<http::Uri>()
        .is_ok_and(|u| u.path() == path && u.query().is_none());
    let rewritten = rewrite(&m, path, None);
    // Paths reach the proxy in origin form; a `Keep` route passes any other text through.
    if path.starts_with('/') {
        assert!(rewritten.starts_with('/'), "{}: upstream URI", route.name);
    }
    if matches!(route.uri, UriRule::StripPrefix(_)) {
        assert!(!rewritten.starts_with("//"), "{}: `//` left", route.name);
    }
    // For a path hyper would have accepted, the URI the proxy builds must parse.
    if valid_path {
        for query in [None, Some("jwt_token=a.b.c&x=1")] {
            let rewritten = rewrite(&m, path, query);
            let uri = format!("http://10.0.0.1:{}{rewritten}", port.unwrap_or(80));
            assert!(uri.parse::<http::Uri>().is_ok(), "{}: URI", route.name);
        }
    }
}

type Summary<'a> = Option<(String, Option<&'a str>, Option<&'a str>, Option<&'a str>)>;

fn summary<'a>(m: Option<&Matched<'_, 'a>>) -> Summary<'a> {
    m.map(|m| (m.route.name.clone(), m.token, m.port, m.rest))
}

/// nginx's rule, from the table's data: exact, else first regex, else longest prefix.
fn by_precedence(table: &RouteTable, path: &str) -> Option<String> {
    let routes = table.routes();
    let exact = routes
        .iter()
        .find(|r| matches!(&r.matcher, Matcher::Exact(p) if p == path));
    let regex = || {
        routes
            .iter()
            .find(|r| matches!(&r.matcher, Matcher::Regex(re) if re.is_match(path)))
    };
    let prefix = || {
        let mut best: Option<(usize, &routes::Route)> = None;
        for r in routes {
            if let Matcher::Prefix(p) = &r.matcher
                && path.starts_with(p.as_str())
                && best.is_none_or(|(len, _)| p.len() > len)
            {
                best = Some((p.len(), r));
            }
        }
        best.map(|(_, r)| r)
    };
    exact.or_else(regex).or_else(prefix).map(|r| r.name.clone())
}

/// The upstream path and query, by the README's route table.
fn rewrite(m: &Matched<'_, '_>, path: &str, query: Option<&str>) -> String {
    let with_query = |p: &str| match query {
        Some(q) => format!("{p}?{q}"),
        None => p.to_owned(),
    };
    match &m.route.uri {
        UriRule::Keep => with_query(path),
        UriRule::Root => "/".to_owned(),
        UriRule::Fixed(p) => p.clone(),
        UriRule::StripPrefix(prefix) => {
            let rest = path.strip_prefix(prefix.as_str()).unwrap_or(path);
            with_query(&format!("/{}", rest.trim_start_matches('/')))
        }
        UriRule::ContainerRest => with_query(&format!("/{}", m.rest.unwrap_or_default())),
    }
}

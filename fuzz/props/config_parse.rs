//! `config_parse`: arbitrary bytes as the TOML config, through the binary's two steps
//! (`FileConfig::parse`, then `FileConfig::validate`).
//!
//! File I/O is pinned, so that a fuzzed path can never make a run read `/dev/zero` or depend
//! on the machine: every key-file path the file names is replaced by the committed fuzz key of
//! that kind, and `website.static_dir` by a directory that exists. Everything else is exactly
//! what the file says. The environment is empty.
//!
//! Properties:
//! - neither step panics, and both are functions of their input (validating twice gives the
//!   same configuration, or the same problems);
//! - an accepted configuration keeps every value the file holds (auth, limits, abuse, log,
//!   upstream, services, container ports, route overrides); a key whose name the text does
//!   not contain at all has the documented default constant;
//! - limits are within their documented bounds: `max_token_len ≥ 1`, `max_connections ≥ 1`,
//!   `max_header_bytes ≥ 8192`, `workers ≤ MAX_WORKERS` (and at least one thread runs),
//!   `reload_interval > 0`;
//! - service hosts follow the documented rule, checked both ways on the reported problems: a
//!   service host is refused (a problem at `services.<name>.host`) exactly when it is neither
//!   an IP address nor a DNS name of letters, digits, `-`, `_` and `.` of 1 to 253 bytes
//!   (bracketed hosts: accepted ones hold an IP address); every route the file disabled is
//!   gone, and an overridden route carries its new port, timeouts and body limit.

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;

use gateway::config::{self, ConfigError, Env, FileConfig, Problems, ServiceAddr};
use gateway::routes::{PortRule, Upstream};

use super::common::key_files;

/// At most this many extra signing keys are loaded (each is a file read and an RSA parse).
const MAX_EXTRA_KEYS: usize = 4;

/// Whether `text` writes `keys.payload_private_key`: the environment fills exactly the keys
/// the file leaves out, so a sentinel variable shows through where the file is silent.
fn writes_payload_key(text: &str) -> bool {
    let sentinel = "/sentinel/payload.pem";
    let env = Env {
        payload_private_key: Some(sentinel.to_owned()),
        ..Env::default()
    };
    FileConfig::parse_with_env(text, &env)
        .is_ok_and(|f| f.keys.payload_private_key != Path::new(sentinel))
}

/// Points every path in `file` at the fixed files (see the module docs).
fn pin_paths(file: &mut FileConfig, payload_written: bool) {
    let f = key_files();
    file.keys.signing_public_key = f.signing();
    // Without the key in the file, the default path does not exist here: the gateway must
    // still load (503 mode).
    file.keys.payload_private_key = if payload_written {
        f.payload()
    } else {
        f.absent()
    };
    file.keys.extra_signing_public_keys.truncate(MAX_EXTRA_KEYS);
    file.keys
        .extra_signing_public_keys
        .iter_mut()
        .for_each(|p| *p = f.signing());
    if let Some(dir) = &mut file.website.static_dir {
        *dir = f.dir().to_path_buf();
    }
}

/// Checks every property on one input; panics on a violation.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = FileConfig::parse(text);
    let again = FileConfig::parse(text);
    assert_eq!(
        format!("{parsed:?}"),
        format!("{again:?}"),
        "parse is not a function"
    );
    let Ok(mut file) = parsed else {
        return;
    };
    pin_paths(&mut file, writes_payload_key(text));
    let first = file.clone().validate();
    let second = file.clone().validate();
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "validate is not a function"
    );
    let problems = match &first {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid(Problems(list))) => list.iter().map(|p| p.key.clone()).collect(),
        Err(other) => panic!("validate gave a non-validation error: {other}"),
    };
    services_follow_the_documented_rule(&file, &problems);
    if let Ok(config) = first {
        defaults_where_unwritten(text, &file);
        accepted(&file, &config);
    }
}

/// The documented rule for a service host, written from its statement (README, `[services]`):
/// an IP address, or a DNS name made of ASCII letters, digits, `-`, `_` and `.`, 1 to 253
/// bytes long. An IPv6 address may be written in brackets, once.
fn documented_usable(host: &str) -> bool {
    let in_brackets = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(inner) = in_brackets {
        return inner.parse::<Ipv6Addr>().is_ok();
    }
    let name_chars = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    host.parse::<IpAddr>().is_ok()
        || ((1..=253).contains(&host.len()) && host.chars().all(name_chars))
}

fn services_follow_the_documented_rule(file: &FileConfig, problems: &[String]) {
    let s = &file.services;
    for (name, svc) in [
        ("pyos", &s.pyos),
        ("speedtest", &s.speedtest),
        ("console", &s.console),
        ("website", &s.website),
    ] {
        let refused = problems.contains(&format!("services.{name}.host"));
        let host = &svc.host;
        if host.contains(['[', ']']) && !host.starts_with('[') {
            // Brackets elsewhere than around the whole host: never an IP address, never a name.
            assert!(refused, "services.{name}.host {host:?} accepted");
        } else if host.starts_with('[') && !refused {
            assert!(
                documented_usable(host),
                "services.{name}.host {host:?} accepted"
            );
        } else if !host.starts_with('[') {
            assert_eq!(
                refused,
                !documented_usable(host),
                "services.{name}.host {host:?}: refused {refused}"
            );
        }
    }
}

/// Keys whose name the text does not contain anywhere cannot have been written (a TOML key
/// may be spelt with escapes, so only texts without any backslash are judged): they hold the
/// documented default constants.
fn defaults_where_unwritten(text: &str, file: &FileConfig) {
    if text.contains('\\') {
        return;
    }
    let silent = |key: &str| !text.contains(key);
    let checks: [(&str, bool); 12] = [
        ("listen", file.listen == config::DEFAULT_LISTEN),
        ("node_name", file.node_name.is_empty()),
        (
            "max_connections",
            file.limits.max_connections == config::DEFAULT_MAX_CONNECTIONS,
        ),
        (
            "max_header_bytes",
            file.limits.max_header_bytes == config::DEFAULT_MAX_HEADER_BYTES,
        ),
        (
            "header_read_timeout",
            file.limits.header_read_timeout == config::DEFAULT_HEADER_READ_TIMEOUT,
        ),
        (
            "shutdown_grace",
            file.limits.shutdown_grace == config::DEFAULT_SHUTDOWN_GRACE,
        ),
        ("workers", file.limits.workers == 0),
        (
            "h2_max_concurrent_streams",
            file.limits.h2_max_concurrent_streams == config::DEFAULT_H2_MAX_CONCURRENT_STREAMS,
        ),
        (
            "connect_timeout",
            file.upstream.connect_timeout == config::DEFAULT_CONNECT_TIMEOUT,
        ),
        (
            "auth_failures_per_ip",
            file.abuse.auth_failures_per_ip == gateway::DEFAULT_AUTH_FAILURES_PER_IP,
        ),
        ("access_log", file.log.access_log),
        (
            "ports",
            file.container.ports == gateway::routes::DEFAULT_CONTAINER_PORTS,
        ),
    ];
    for (key, is_default) in checks {
        assert!(
            !silent(key) || is_default,
            "{key}: not written, not the default"
        );
    }
    if silent("pyos") {
        assert_eq!(
            file.services.pyos,
            ServiceAddr {
                host: config::DEFAULT_PYOS_HOST.to_owned(),
                port: config::DEFAULT_PYOS_PORT,
            }
        );
    }
}

fn accepted(file: &FileConfig, config: &config::Config) {
    // Token pipeline.
    let auth = &config.auth;
    assert!(auth.max_token_len >= 1);
    assert_eq!(auth.max_token_len, file.auth.max_token_len);
    assert_eq!(auth.leeway, file.auth.leeway);
    assert_eq!(auth.target.dns_suffixes, file.auth.dns_suffixes);
    assert_eq!(auth.target.allow_loopback, file.auth.allow_loopback);
    assert_eq!(auth.cache.max_ttl, file.auth.cache_max_ttl);
    assert_eq!(auth.cache.max_entries, file.auth.cache_max_entries);
    assert_eq!(
        config.keys.signing.len(),
        1 + file.keys.extra_signing_public_keys.len()
    );
    assert_eq!(
        config.keys.payload.is_some(),
        file.keys.payload_private_key != key_files().absent(),
        "payload key loaded or not as its file says"
    );
    assert!(!config.key_watch.interval.is_zero());

    // Client-side limits.
    let limits = &config.limits;
    assert!(limits.max_connections >= 1);
    assert!(limits.max_header_bytes >= 8192);
    assert!(limits.workers <= config::MAX_WORKERS);
    assert!(limits.worker_threads() >= 1);
    assert_eq!(limits, &file.limits);

    // Abuse, log, upstream, services.
    assert_eq!(
        config.abuse.auth_failures_per_ip,
        file.abuse.auth_failures_per_ip
    );
    assert_eq!(config.log, file.log, "log");
    assert_eq!(config.upstream, file.upstream, "upstream");
    assert_eq!(config.services, file.services, "services");
    for svc in [
        &config.services.pyos,
        &config.services.speedtest,
        &config.services.console,
        &config.services.website,
    ] {
        // The authority is what the proxy dials and the `Host` it sends.
        let uri = format!("http://{}/", svc.authority()).parse::<http::Uri>();
        assert!(
            uri.is_ok_and(|uri| uri.port_u16() == Some(svc.port)),
            "an accepted service host makes no URI"
        );
    }

    // Routes.
    let ports = &file.container.ports;
    for port in ports.iter().copied().chain([0, 6081, 29786, u16::MAX]) {
        assert_eq!(
            config.routes.container_port_allowed(port),
            ports.contains(&port)
        );
    }
    assert_eq!(
        config.static_dir.is_some(),
        file.website.static_dir.is_some()
    );
    for (name, o) in &file.routes {
        let route = config.routes.routes().iter().find(|r| &r.name == name);
        if o.enabled == Some(false) {
            assert!(route.is_none(), "routes.{name} disabled but present");
            continue;
        }
        let route = route.expect("an overridden route that is not disabled exists");
        if let Some(port) = o.port {
            assert_eq!(route.upstream, Upstream::Desktop(PortRule::Fixed(port)));
        }
        if let Some(t) = o.read_timeout {
            assert_eq!(route.read_timeout, t);
        }
        if let Some(t) = o.send_timeout {
            assert_eq!(route.send_timeout, t);
        }
        if let Some(b) = o.body_limit {
            assert_eq!(route.body_limit, b);
        }
    }
}

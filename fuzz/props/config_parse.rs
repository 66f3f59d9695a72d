//! `config_parse`: arbitrary bytes as the TOML config, through the binary's two stages
//! (`FileConfig::parse`, then `Config::load`).
//!
//! File I/O is pinned, so that a fuzzed path can never make a run read `/dev/zero` or depend
//! on the machine: every key-file path the file names is replaced by the committed fuzz key of
//! that kind, and `website.static_dir` by a directory that exists. Everything else is exactly
//! what the file says. The environment is empty.
//!
//! Properties:
//! - neither stage panics, and both are functions of their input (loading twice gives the
//!   same configuration, or the same error);
//! - an accepted configuration keeps every value the file set (auth, limits, abuse, log,
//!   upstream, services, container ports, route overrides) and falls back to the documented
//!   defaults for those it did not;
//! - limits are within their documented bounds: `max_token_len ≥ 1`, `max_connections ≥ 1`,
//!   `max_header_bytes ≥ 8192`, `workers ≤ MAX_WORKERS` (and at least one thread runs),
//!   `reload_interval > 0`;
//! - a service host is an IP address or a DNS name (letters, digits, `-`, `_`, `.`, at most
//!   253 bytes) and makes a URI with its port (the proxy dials `http://host:port/…`); every
//!   route the file disabled is gone, and an overridden route carries its new port, timeouts
//!   and body limit.

use std::path::Path;

use gateway::config::{self, Config, Env, FileConfig};
use gateway::routes::{PortRule, Upstream};
use gateway::token::{self, CacheConfig, TargetPolicy};

use super::common::key_files;

/// At most this many extra signing keys are loaded (each is a file read and an RSA parse).
const MAX_EXTRA_KEYS: usize = 4;

/// Points every path in `file` at the fixed files (see the module docs).
fn pin_paths(file: &mut FileConfig) {
    let f = key_files();
    file.keys.signing_public_key = Some(f.signing());
    if file.keys.payload_private_key.is_some() {
        file.keys.payload_private_key = Some(f.payload());
    } else {
        // The default path does not exist here: the gateway must still load (503 mode).
        file.keys.payload_private_key = Some(f.absent());
    }
    if let Some(extra) = &mut file.keys.extra_signing_public_keys {
        extra.truncate(MAX_EXTRA_KEYS);
        extra.iter_mut().for_each(|p| *p = f.signing());
    }
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
    pin_paths(&mut file);
    let first = Config::load(file.clone(), &Env::default());
    let second = Config::load(file.clone(), &Env::default());
    assert_eq!(
        format!("{first:?}"),
        format!("{second:?}"),
        "load is not a function"
    );
    if let Ok(config) = first {
        accepted(&file, &config, &key_files().absent());
    }
}

fn accepted(file: &FileConfig, config: &Config, absent: &Path) {
    // Token pipeline.
    let auth = &config.auth;
    let defaults = token::AuthConfig::default();
    assert!(auth.max_token_len >= 1);
    assert_eq!(
        auth.max_token_len,
        file.auth.max_token_len.unwrap_or(defaults.max_token_len)
    );
    assert_eq!(auth.leeway, file.auth.leeway.unwrap_or(defaults.leeway));
    let policy = TargetPolicy::default();
    assert_eq!(
        auth.target.dns_suffixes,
        file.auth
            .dns_suffixes
            .clone()
            .unwrap_or(policy.dns_suffixes)
    );
    assert_eq!(
        auth.target.allow_loopback,
        file.auth.allow_loopback.unwrap_or(policy.allow_loopback)
    );
    let cache = CacheConfig::default();
    assert_eq!(
        auth.cache.max_ttl,
        file.auth.cache_max_ttl.unwrap_or(cache.max_ttl)
    );
    assert_eq!(
        auth.cache.max_entries,
        file.auth.cache_max_entries.unwrap_or(cache.max_entries)
    );
    assert_eq!(
        config.keys.signing.len(),
        1 + file
            .keys
            .extra_signing_public_keys
            .as_ref()
            .map_or(0, Vec::len)
    );
    assert_eq!(
        config.keys.payload.is_some(),
        file.keys.payload_private_key.as_deref() != Some(absent),
        "payload key loaded or not as its file says"
    );
    assert!(!config.key_watch.interval.is_zero());

    // Client-side limits.
    let limits = &config.limits;
    assert!(limits.max_connections >= 1);
    assert!(limits.max_header_bytes >= 8192);
    assert_eq!(
        limits.max_connections,
        file.limits
            .max_connections
            .unwrap_or(config::DEFAULT_MAX_CONNECTIONS)
    );
    assert_eq!(
        limits.max_header_bytes,
        file.limits
            .max_header_bytes
            .unwrap_or(config::DEFAULT_MAX_HEADER_BYTES)
    );
    assert_eq!(
        limits.header_read_timeout,
        file.limits
            .header_read_timeout
            .unwrap_or(config::DEFAULT_HEADER_READ_TIMEOUT)
    );
    assert_eq!(
        limits.shutdown_grace,
        file.limits
            .shutdown_grace
            .unwrap_or(config::DEFAULT_SHUTDOWN_GRACE)
    );
    assert_eq!(limits.workers, file.limits.workers.unwrap_or(0));
    assert!(limits.workers <= config::MAX_WORKERS);
    assert!(limits.worker_threads() >= 1);
    assert_eq!(
        limits.h2_max_concurrent_streams,
        file.limits
            .h2_max_concurrent_streams
            .unwrap_or(config::DEFAULT_H2_MAX_CONCURRENT_STREAMS)
    );

    // Abuse, log, upstream.
    assert_eq!(
        config.abuse.auth_failures_per_ip,
        file.abuse
            .auth_failures_per_ip
            .unwrap_or(gateway::throttle::DEFAULT_LIMIT)
    );
    assert_eq!(
        config.log.access_log,
        file.log.access_log.unwrap_or(true),
        "log.access_log"
    );
    assert_eq!(
        config.upstream.connect_timeout,
        file.upstream
            .connect_timeout
            .unwrap_or(config::DEFAULT_CONNECT_TIMEOUT)
    );
    if let Some(map) = &file.upstream.port_map {
        // Keys that spell one port twice ("6081", "06081"): the last in key order wins.
        let mut expected = std::collections::BTreeMap::new();
        for (from, to) in map {
            let from: u16 = from.parse().expect("an accepted port_map key is a port");
            expected.insert(from, *to);
        }
        assert_eq!(config.upstream.port_map, expected, "upstream.port_map");
    }
    if let Some(resolver) = &file.upstream.resolver {
        assert_eq!(config.upstream.resolver.len(), resolver.len());
    }

    // Services.
    let s = &config.services;
    for (svc, set) in [
        (&s.pyos, &file.services.pyos),
        (&s.speedtest, &file.services.speedtest),
        (&s.console, &file.services.console),
        (&s.website, &file.services.website),
    ] {
        // An IP address or a DNS name, which makes a URI with its port: the authority is what
        // the proxy dials and the `Host` it sends.
        let host = svc.host.trim_start_matches('[').trim_end_matches(']');
        let is_ip = host.parse::<std::net::IpAddr>().is_ok();
        let is_name = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        assert!(
            is_ip || is_name,
            "a service host that is neither IP nor name"
        );
        let uri = format!("http://{}/", svc.authority()).parse::<http::Uri>();
        assert!(
            uri.is_ok_and(|uri| uri.port_u16() == Some(svc.port)),
            "an accepted service host makes no URI"
        );
        if let Some(host) = &set.host {
            assert_eq!(&svc.host, host);
        }
        if let Some(port) = set.port {
            assert_eq!(svc.port, port);
        }
    }

    // Routes.
    let ports = file
        .container
        .ports
        .clone()
        .unwrap_or_else(|| gateway::routes::DEFAULT_CONTAINER_PORTS.to_vec());
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

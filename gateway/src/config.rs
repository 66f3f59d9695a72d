//! The gateway's configuration: one TOML file (`--config`), one structure, two steps.
//!
//! [`FileConfig`] is the file: every section and key, each with its default (the `Default`
//! impls below, from the documented constants), every struct `deny_unknown_fields`, durations
//! and sizes parsed as they are read. The original gateway's environment variables are one
//! overlay ([`Env::overlay`]): each fills the key it stands for when the file does not set it.
//! So, per key: the file, then the variable, then the default.
//!
//! [`FileConfig::validate`] is the one check: it reports every problem at once, each with its
//! key path (`invalid value for `limits.keepalive_timeout`: must be positive`), reads the key
//! files and builds the route table, so [`crate::server::serve`] cannot fail on configuration.
//!
//! A payload key that is missing or unusable does not stop the gateway: it starts, logs a
//! warning and answers authenticated requests with 503 (the original did the same per request).
//! The signing key is required: without it no token can ever pass.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::reload::{self, KeySources};
use crate::routes::{self, RouteOverride, RouteTable};
use crate::telemetry::LogFormat;
use crate::throttle::{self, Abuse, Grouping};
use crate::token::{
    AuthConfig, CacheConfig, Keys, PayloadKey, PayloadPadding, SigningKey, TargetPolicy,
};
use crate::units;

/// Where the gateway listens: the port abcdesktop's `http-router` NodePort uses.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:30443";
/// The original's default signing public key path (`JWT_DESKTOP_SIGNING_PUBLIC_KEY`).
pub const DEFAULT_SIGNING_KEY: &str =
    "/config.signing/abcdesktop_jwt_desktop_signing_public_key.pem";
/// The original's default payload private key path (`JWT_DESKTOP_PAYLOAD_PRIVATE_KEY`).
pub const DEFAULT_PAYLOAD_KEY: &str =
    "/config.payload/abcdesktop_jwt_desktop_payload_private_key.pem";
/// Concurrent client connections (WebSocket tunnels included); beyond this, accepting waits
/// (back-pressure, not refusal). Sized with the memory budget in the README: at the largest
/// buffers a connection and its upstream exchange may hold, 1 024 fit the manifests' 256 MiB
/// limit with room to spare (nginx's default `worker_connections` is 1 024 too).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;
/// Time a client has to send a complete request head: from accept (TLS handshake included)
/// for the first request, from its first byte for a later one (nginx `client_header_timeout`,
/// slowloris bound).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection may wait for its next request with none in flight: HTTP/1
/// keep-alive, and HTTP/2 with no open stream (then a GOAWAY). The original's
/// `keepalive_timeout 120`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait between two reads of a request body (nginx `client_body_timeout`); then 408.
pub const DEFAULT_CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a write to a client may wait for the client to read (nginx `send_timeout`), on
/// responses and WebSocket tunnels alike; then the connection closes.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP/2 PING interval on connections with open streams (a dead peer is noticed)...
pub const DEFAULT_H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// ...and how long its answer may take before the connection closes.
pub const DEFAULT_H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest request head accepted, in bytes (nginx: 4 × 8k large_client_header_buffers).
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// How long in-flight requests may finish after a shutdown signal.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long `/readyz` fails before the listener stops accepting, so load balancers and
/// kube-proxy take the pod out of rotation first.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_secs(5);
/// Where the admin endpoints (`/metrics`, `/livez`, `/readyz`) listen.
pub const DEFAULT_ADMIN_LISTEN: &str = "0.0.0.0:9090";
/// Authentication-failure access-log lines written per second at most (the rest are counted).
pub const DEFAULT_AUTH_FAILURE_LOG_RATE: u32 = 20;
/// HTTP/2 streams per connection (a browser opens a few dozen at most; nginx: 128).
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 128;
/// HTTP/2 streams a client may reset before the server accepts them (CVE-2023-44487 bound).
pub const DEFAULT_H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2 streams the server may reset for client protocol errors (CVE-2025-8671 bound).
pub const DEFAULT_H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 256;
/// Most connection-serving threads `[limits] workers` may ask for.
pub const MAX_WORKERS: usize = 1024;
/// nginx's `proxy_connect_timeout` default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle pooled upstream connection is kept.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle pooled connections kept per upstream host.
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 32;
/// The pyos service name when neither `PYOS_FQDN` nor `PYOS_SERVICE_HOST` is set (route 4.0).
pub const DEFAULT_PYOS_HOST: &str = "pyos";
/// pyos's API port (`PYOS_SERVICE_PORT` default).
pub const DEFAULT_PYOS_PORT: u16 = 8000;
/// The speedtest, console and website Service names of abcdesktop 4.x.
pub const DEFAULT_SPEEDTEST_HOST: &str = "speedtest";
/// See [`DEFAULT_SPEEDTEST_HOST`].
pub const DEFAULT_CONSOLE_HOST: &str = "console";
/// See [`DEFAULT_SPEEDTEST_HOST`].
pub const DEFAULT_WEBSITE_HOST: &str = "website";
/// Port of the speedtest, console and website Services.
pub const DEFAULT_SERVICE_PORT: u16 = 80;

// === the environment ===

/// The original gateway's environment variables, read by `main.rs` and passed in (tests build
/// this struct directly and never touch the process environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `JWT_DESKTOP_SIGNING_PUBLIC_KEY`: `keys.signing_public_key`.
    pub signing_public_key: Option<String>,
    /// `JWT_DESKTOP_PAYLOAD_PRIVATE_KEY`: `keys.payload_private_key`.
    pub payload_private_key: Option<String>,
    /// `NODE_NAME`: `node_name`, what `GET /node` answers.
    pub node_name: Option<String>,
    /// `PYOS_FQDN`: `services.pyos.host`.
    pub pyos_fqdn: Option<String>,
    /// `PYOS_SERVICE_HOST`: `services.pyos.host` when `PYOS_FQDN` is unset (Kubernetes
    /// service link).
    pub pyos_service_host: Option<String>,
    /// `PYOS_SERVICE_PORT`: `services.pyos.port`.
    pub pyos_service_port: Option<String>,
    /// `SPEEDTEST_FQDN`: `services.speedtest.host`.
    pub speedtest_fqdn: Option<String>,
    /// `CONSOLE_FQDN`: `services.console.host`.
    pub console_fqdn: Option<String>,
    /// `WEBSITE_FQDN`: `services.website.host`.
    pub website_fqdn: Option<String>,
    /// `NAMESERVER_RESOLVER`: `upstream.resolver` (space-separated), the DNS servers for
    /// desktop names (route's entrypoint).
    pub nameserver_resolver: Option<String>,
}

impl Env {
    /// Reads the variables through `get` (`main.rs` passes `std::env::var`); an empty value
    /// counts as unset.
    pub fn from_fn(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| get(name).filter(|v| !v.is_empty());
        Env {
            signing_public_key: get("JWT_DESKTOP_SIGNING_PUBLIC_KEY"),
            payload_private_key: get("JWT_DESKTOP_PAYLOAD_PRIVATE_KEY"),
            node_name: get("NODE_NAME"),
            pyos_fqdn: get("PYOS_FQDN"),
            pyos_service_host: get("PYOS_SERVICE_HOST"),
            pyos_service_port: get("PYOS_SERVICE_PORT"),
            speedtest_fqdn: get("SPEEDTEST_FQDN"),
            console_fqdn: get("CONSOLE_FQDN"),
            website_fqdn: get("WEBSITE_FQDN"),
            nameserver_resolver: get("NAMESERVER_RESOLVER"),
        }
    }

    /// The overlay: every variable that is set fills its key in `file` unless `written(key)`
    /// says the file itself sets that key. A value that cannot be used is an error naming the
    /// variable.
    pub fn overlay(
        &self,
        file: &mut FileConfig,
        written: impl Fn(&str) -> bool,
    ) -> Result<(), ConfigError> {
        let free = |key: &str, value: &Option<String>| match value {
            Some(value) if !written(key) => Some(value.clone()),
            _ => None,
        };
        if let Some(v) = free("keys.signing_public_key", &self.signing_public_key) {
            file.keys.signing_public_key = v.into();
        }
        if let Some(v) = free("keys.payload_private_key", &self.payload_private_key) {
            file.keys.payload_private_key = v.into();
        }
        if let Some(v) = free("node_name", &self.node_name) {
            file.node_name = v;
        }
        let pyos_host = self.pyos_fqdn.clone().or(self.pyos_service_host.clone());
        for (key, value, host) in [
            (
                "services.pyos.host",
                pyos_host,
                &mut file.services.pyos.host,
            ),
            (
                "services.speedtest.host",
                self.speedtest_fqdn.clone(),
                &mut file.services.speedtest.host,
            ),
            (
                "services.console.host",
                self.console_fqdn.clone(),
                &mut file.services.console.host,
            ),
            (
                "services.website.host",
                self.website_fqdn.clone(),
                &mut file.services.website.host,
            ),
        ] {
            if let Some(v) = free(key, &value) {
                *host = v;
            }
        }
        if let Some(v) = free("services.pyos.port", &self.pyos_service_port) {
            file.services.pyos.port = v.parse().map_err(|_| {
                ConfigError::Invalid(Problems(vec![Problem::new(
                    "PYOS_SERVICE_PORT",
                    "not a port number",
                )]))
            })?;
        }
        if let Some(v) = free("upstream.resolver", &self.nameserver_resolver) {
            file.upstream.resolver = v
                .split_whitespace()
                .map(|text| {
                    parse_nameserver(text).ok_or_else(|| {
                        ConfigError::Invalid(Problems(vec![Problem::new(
                            "NAMESERVER_RESOLVER",
                            format!("`{text}` is not an IP address"),
                        )]))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }
}

// === the file ===

/// The TOML file: every key, with its default. `manifests/gateway.example.toml` shows them all
/// (a test checks that its values are these defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address (default [`DEFAULT_LISTEN`]).
    pub listen: String,
    /// What `GET /node` answers (env `NODE_NAME`; default empty).
    pub node_name: String,
    /// `[keys]`: key files.
    pub keys: KeysSection,
    /// `[auth]`: token pipeline settings.
    pub auth: AuthSection,
    /// `[limits]`: client-side limits.
    pub limits: Limits,
    /// `[upstream]`: upstream client settings.
    pub upstream: UpstreamConfig,
    /// `[services.*]`: named services (pyos, speedtest, console, website).
    pub services: Services,
    /// `[website]`: the `/` route from a static directory instead of the `website` service.
    pub website: WebsiteSection,
    /// `[container]`: the `/container/…` routes.
    pub container: ContainerSection,
    /// `[routes.<name>]`: per-route overrides, by route name.
    pub routes: BTreeMap<String, RouteOverride>,
    /// `[admin]`: the admin listener.
    pub admin: AdminSection,
    /// `[shutdown]`: the shutdown sequence.
    pub shutdown: ShutdownSection,
    /// `[log]`: logging.
    pub log: LogConfig,
    /// `[tls]`: TLS on the public listener.
    pub tls: TlsSection,
    /// `[abuse]`: abuse limits.
    pub abuse: AbuseSection,
    /// `[clients]`: how client addresses are told apart.
    pub clients: ClientsSection,
}

impl Default for FileConfig {
    fn default() -> Self {
        FileConfig {
            listen: DEFAULT_LISTEN.to_owned(),
            node_name: String::new(),
            keys: KeysSection::default(),
            auth: AuthSection::default(),
            limits: Limits::default(),
            upstream: UpstreamConfig::default(),
            services: Services::default(),
            website: WebsiteSection::default(),
            container: ContainerSection::default(),
            routes: BTreeMap::new(),
            admin: AdminSection::default(),
            shutdown: ShutdownSection::default(),
            log: LogConfig::default(),
            tls: TlsSection::default(),
            abuse: AbuseSection::default(),
            clients: ClientsSection::default(),
        }
    }
}

/// `[keys]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysSection {
    /// Signing public key (PEM); env `JWT_DESKTOP_SIGNING_PUBLIC_KEY`, default
    /// [`DEFAULT_SIGNING_KEY`].
    pub signing_public_key: PathBuf,
    /// Payload private key (PEM; an `RSA PUBLIC KEY` selects the documented reverse mode); env
    /// `JWT_DESKTOP_PAYLOAD_PRIVATE_KEY`, default [`DEFAULT_PAYLOAD_KEY`].
    pub payload_private_key: PathBuf,
    /// Padding pyos used for `hash`.
    pub payload_padding: PayloadPadding,
    /// More signing public keys accepted beside the main one (a manual rotation).
    pub extra_signing_public_keys: Vec<PathBuf>,
    /// How often the key files are re-read (see [`reload::DEFAULT_INTERVAL`]).
    #[serde(with = "units::duration")]
    pub reload_interval: Duration,
    /// How long a replaced signing key stays accepted (see [`reload::DEFAULT_OVERLAP`]).
    #[serde(with = "units::duration")]
    pub signing_overlap: Duration,
}

impl Default for KeysSection {
    fn default() -> Self {
        KeysSection {
            signing_public_key: DEFAULT_SIGNING_KEY.into(),
            payload_private_key: DEFAULT_PAYLOAD_KEY.into(),
            payload_padding: PayloadPadding::default(),
            extra_signing_public_keys: Vec::new(),
            reload_interval: reload::DEFAULT_INTERVAL,
            signing_overlap: reload::DEFAULT_OVERLAP,
        }
    }
}

/// `[auth]`; the defaults are the token pipeline's own ([`AuthConfig::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    /// Longest token accepted, in bytes.
    pub max_token_len: usize,
    /// Clock leeway on `exp`/`nbf`, in seconds.
    pub leeway: u64,
    /// DNS suffixes a decrypted target name must end with.
    pub dns_suffixes: Vec<String>,
    /// Accept loopback targets (demo and tests only).
    pub allow_loopback: bool,
    /// Longest time a token's target is cached.
    #[serde(with = "units::duration")]
    pub cache_max_ttl: Duration,
    /// Positive cache bound.
    pub cache_max_entries: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        let AuthConfig {
            max_token_len,
            leeway,
            target,
            cache,
        } = AuthConfig::default();
        AuthSection {
            max_token_len,
            leeway,
            dns_suffixes: target.dns_suffixes,
            allow_loopback: target.allow_loopback,
            cache_max_ttl: cache.max_ttl,
            cache_max_entries: cache.max_entries,
        }
    }
}

impl AuthSection {
    /// The token pipeline's settings.
    fn auth_config(&self) -> AuthConfig {
        AuthConfig {
            max_token_len: self.max_token_len,
            leeway: self.leeway,
            target: TargetPolicy {
                dns_suffixes: self.dns_suffixes.clone(),
                allow_loopback: self.allow_loopback,
            },
            cache: CacheConfig {
                max_ttl: self.cache_max_ttl,
                max_entries: self.cache_max_entries,
                ..CacheConfig::default()
            },
        }
    }
}

/// `[limits]`: client-side limits, used as they are by the connection code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    #[serde(with = "units::duration")]
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_KEEPALIVE_TIMEOUT`].
    #[serde(with = "units::duration")]
    pub keepalive_timeout: Duration,
    /// See [`DEFAULT_CLIENT_BODY_TIMEOUT`].
    #[serde(with = "units::duration")]
    pub client_body_timeout: Duration,
    /// See [`DEFAULT_SEND_TIMEOUT`].
    #[serde(with = "units::duration")]
    pub send_timeout: Duration,
    /// See [`DEFAULT_H2_KEEPALIVE_INTERVAL`].
    #[serde(with = "units::duration")]
    pub h2_keepalive_interval: Duration,
    /// See [`DEFAULT_H2_KEEPALIVE_TIMEOUT`].
    #[serde(with = "units::duration")]
    pub h2_keepalive_timeout: Duration,
    /// Whether the plaintext listener also speaks HTTP/2 with prior knowledge (h2c). Off by
    /// default: browsers never use h2c, and HTTP/1-only skips the protocol sniffing. With TLS,
    /// HTTP/2 is chosen by ALPN whatever this says.
    pub h2c: bool,
    /// Concurrent connections one client address may hold; 0 (the default) for no cap. Off by
    /// default because behind a NodePort with SNAT, or an ingress, every user shares one address.
    pub max_connections_per_ip: usize,
    /// See [`DEFAULT_MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    #[serde(with = "units::duration")]
    pub shutdown_grace: Duration,
    /// See [`DEFAULT_H2_MAX_CONCURRENT_STREAMS`].
    pub h2_max_concurrent_streams: u32,
    /// See [`DEFAULT_H2_MAX_PENDING_ACCEPT_RESET_STREAMS`].
    pub h2_max_pending_accept_reset_streams: usize,
    /// See [`DEFAULT_H2_MAX_LOCAL_ERROR_RESET_STREAMS`].
    pub h2_max_local_error_reset_streams: usize,
    /// Threads serving connections, each with its own single-threaded runtime and upstream
    /// pool; 0 (the default) means one per CPU the process may run on (its affinity mask, so
    /// `taskset` and cgroup CPU sets count). See [`Limits::worker_threads`].
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            client_body_timeout: DEFAULT_CLIENT_BODY_TIMEOUT,
            send_timeout: DEFAULT_SEND_TIMEOUT,
            h2_keepalive_interval: DEFAULT_H2_KEEPALIVE_INTERVAL,
            h2_keepalive_timeout: DEFAULT_H2_KEEPALIVE_TIMEOUT,
            h2c: false,
            max_connections_per_ip: 0,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            h2_max_pending_accept_reset_streams: DEFAULT_H2_MAX_PENDING_ACCEPT_RESET_STREAMS,
            h2_max_local_error_reset_streams: DEFAULT_H2_MAX_LOCAL_ERROR_RESET_STREAMS,
            workers: 0,
        }
    }
}

impl Limits {
    /// The number of connection-serving threads: `workers`, or one per CPU the process may
    /// run on when it is 0.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            n => n,
        }
    }

    fn check(&self, problems: &mut Problems) {
        for (key, value) in [
            ("limits.header_read_timeout", self.header_read_timeout),
            ("limits.keepalive_timeout", self.keepalive_timeout),
            ("limits.client_body_timeout", self.client_body_timeout),
            ("limits.send_timeout", self.send_timeout),
            ("limits.h2_keepalive_interval", self.h2_keepalive_interval),
            ("limits.h2_keepalive_timeout", self.h2_keepalive_timeout),
        ] {
            problems.check(!value.is_zero(), key, "must be positive");
        }
        problems.check(
            self.workers <= MAX_WORKERS,
            "limits.workers",
            format!("must be at most {MAX_WORKERS}"),
        );
        problems.check(
            self.max_connections > 0,
            "limits.max_connections",
            "must be positive",
        );
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        problems.check(
            self.max_header_bytes >= 8192,
            "limits.max_header_bytes",
            "must be at least 8192",
        );
    }
}

/// `[upstream]`: upstream client settings, used as they are by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// TCP connect timeout, name resolution included (see [`DEFAULT_CONNECT_TIMEOUT`]).
    #[serde(with = "units::duration")]
    pub connect_timeout: Duration,
    /// See [`DEFAULT_POOL_IDLE_TIMEOUT`].
    #[serde(with = "units::duration")]
    pub pool_idle_timeout: Duration,
    /// See [`DEFAULT_POOL_MAX_IDLE_PER_HOST`].
    pub pool_max_idle_per_host: usize,
    /// Dial-time port translation `{ "6081" = 16081 }`: the demo and tests use it to run fake
    /// desktop services on ephemeral ports. Empty in production.
    #[serde(deserialize_with = "port_map")]
    pub port_map: BTreeMap<u16, u16>,
    /// DNS servers for desktop names (`"10.96.0.10"` or `"10.96.0.10:53"`); env
    /// `NAMESERVER_RESOLVER`; empty (the default): the system's (`/etc/resolv.conf`).
    #[serde(deserialize_with = "nameservers")]
    pub resolver: Vec<SocketAddr>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            port_map: BTreeMap::new(),
            resolver: Vec::new(),
        }
    }
}

impl UpstreamConfig {
    /// The port actually dialled for `port`.
    pub fn dial_port(&self, port: u16) -> u16 {
        self.port_map.get(&port).copied().unwrap_or(port)
    }
}

/// TOML keys are strings: `"6081"` (or `"06081"`; the last in key order wins) is port 6081.
fn port_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u16, u16>, D::Error> {
    let written = BTreeMap::<String, u16>::deserialize(d)?;
    written
        .into_iter()
        .map(|(from, to)| match from.parse::<u16>() {
            Ok(from) => Ok((from, to)),
            Err(_) => Err(serde::de::Error::custom(format!("`{from}` is not a port"))),
        })
        .collect()
}

/// A DNS server: an IP address (port 53) or an address with its port.
fn parse_nameserver(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

fn nameservers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| {
            parse_nameserver(text)
                .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an IP address")))
        })
        .collect()
}

/// A host and port of a named service; resolved at request time, never at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddr {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ServiceAddr {
    fn new(host: &str, port: u16) -> Self {
        ServiceAddr {
            host: host.to_owned(),
            port,
        }
    }

    /// `host:port`, IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `[services.*]`: the named services, used as they are by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// pyos (API and auth routes); env `PYOS_FQDN`, else `PYOS_SERVICE_HOST`, and
    /// `PYOS_SERVICE_PORT`.
    pub pyos: ServiceAddr,
    /// speedtest; env `SPEEDTEST_FQDN`.
    pub speedtest: ServiceAddr,
    /// console; env `CONSOLE_FQDN`.
    pub console: ServiceAddr,
    /// website (`/`); env `WEBSITE_FQDN`.
    pub website: ServiceAddr,
}

impl Default for Services {
    fn default() -> Self {
        Services {
            pyos: ServiceAddr::new(DEFAULT_PYOS_HOST, DEFAULT_PYOS_PORT),
            speedtest: ServiceAddr::new(DEFAULT_SPEEDTEST_HOST, DEFAULT_SERVICE_PORT),
            console: ServiceAddr::new(DEFAULT_CONSOLE_HOST, DEFAULT_SERVICE_PORT),
            website: ServiceAddr::new(DEFAULT_WEBSITE_HOST, DEFAULT_SERVICE_PORT),
        }
    }
}

/// By hand because each service has its own defaults: a `[services.pyos]` that sets only
/// `host` keeps pyos's port 8000, which a plain `#[serde(default)]` on [`ServiceAddr`] (one
/// default for all four) could not do.
impl<'de> Deserialize<'de> for Services {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Written {
            pyos: Keys,
            speedtest: Keys,
            console: Keys,
            website: Keys,
        }
        #[derive(Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Keys {
            host: Option<String>,
            port: Option<u16>,
        }
        let written = Written::deserialize(d)?;
        let mut services = Services::default();
        for (svc, keys) in [
            (&mut services.pyos, written.pyos),
            (&mut services.speedtest, written.speedtest),
            (&mut services.console, written.console),
            (&mut services.website, written.website),
        ] {
            svc.host = keys.host.unwrap_or_else(|| svc.host.clone());
            svc.port = keys.port.unwrap_or(svc.port);
        }
        Ok(services)
    }
}

/// `[website]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsiteSection {
    /// Serve `/` from this directory (3.0–3.2 behaviour) instead of the `website` service.
    pub static_dir: Option<PathBuf>,
}

/// `[container]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerSection {
    /// Ports `/container/<jwt>/<port>` and `/container/<port>` may reach (default
    /// [`routes::DEFAULT_CONTAINER_PORTS`]).
    pub ports: Vec<u16>,
}

impl Default for ContainerSection {
    fn default() -> Self {
        ContainerSection {
            ports: routes::DEFAULT_CONTAINER_PORTS.to_vec(),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSection {
    /// Listen address of `/metrics`, `/livez`, `/readyz`; `"off"` disables the listener
    /// (default [`DEFAULT_ADMIN_LISTEN`]).
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        AdminSection {
            listen: DEFAULT_ADMIN_LISTEN.to_owned(),
        }
    }
}

/// `[shutdown]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSection {
    /// See [`DEFAULT_DRAIN_DELAY`].
    #[serde(with = "units::duration")]
    pub drain_delay: Duration,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            drain_delay: DEFAULT_DRAIN_DELAY,
        }
    }
}

/// `[log]`, used as it is by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json` (the `--log-format` flag wins).
    pub format: LogFormat,
    /// One line per request at `info` (target `access`).
    pub access_log: bool,
    /// See [`DEFAULT_AUTH_FAILURE_LOG_RATE`].
    pub auth_failure_lines_per_second: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            access_log: true,
            auth_failure_lines_per_second: DEFAULT_AUTH_FAILURE_LOG_RATE,
        }
    }
}

/// `[tls]`: both files, or neither (plain HTTP).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
}

/// `[abuse]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseSection {
    /// Refused tokens per client address and window before 429; 0 disables (see
    /// [`throttle::DEFAULT_LIMIT`]).
    pub auth_failures_per_ip: u32,
    /// The counting window (see [`throttle::DEFAULT_WINDOW`]).
    #[serde(with = "units::duration")]
    pub auth_failure_window: Duration,
}

impl Default for AbuseSection {
    fn default() -> Self {
        AbuseSection {
            auth_failures_per_ip: throttle::DEFAULT_LIMIT,
            auth_failure_window: throttle::DEFAULT_WINDOW,
        }
    }
}

/// `[clients]`: how client addresses are told apart (used by the `[abuse]` throttle).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientsSection {
    /// IPv6 clients are counted by this prefix length, 1–128 (see
    /// [`throttle::DEFAULT_IPV6_PREFIX`]).
    pub ipv6_prefix: u8,
    /// Addresses or CIDRs whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for ClientsSection {
    fn default() -> Self {
        ClientsSection {
            ipv6_prefix: throttle::DEFAULT_IPV6_PREFIX,
            trusted_proxies: Vec::new(),
        }
    }
}

impl ClientsSection {
    fn grouping(&self, problems: &mut Problems) -> Grouping {
        problems.check(
            (1..=128).contains(&self.ipv6_prefix),
            "clients.ipv6_prefix",
            "expected 1 to 128",
        );
        let mut trusted_proxies = Vec::new();
        for text in &self.trusted_proxies {
            // A bare address is a single-address network.
            match text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(ipnet::IpNet::from))
            {
                Ok(net) => trusted_proxies.push(net),
                Err(_) => problems.push(
                    "clients.trusted_proxies",
                    "expected addresses or CIDRs like 10.0.0.0/8",
                ),
            }
        }
        Grouping {
            ipv6_prefix: self.ipv6_prefix,
            trusted_proxies,
        }
    }
}

// === the validated config ===

/// Key files and how they are watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWatch {
    /// The files.
    pub sources: KeySources,
    /// How often they are re-read.
    pub interval: Duration,
    /// How long a replaced signing key stays accepted.
    pub overlap: Duration,
}

/// PEM files for TLS on the public listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The validated configuration [`crate::server::serve`] runs with.
#[derive(Debug)]
pub struct Config {
    /// Listen address (used by `main.rs` to bind).
    pub listen: SocketAddr,
    /// What `GET /node` answers, without the newline.
    pub node_name: String,
    /// Token pipeline settings.
    pub auth: AuthConfig,
    /// Loaded keys (payload key `None` → 503 for authenticated requests).
    pub keys: Keys,
    /// Client-side limits.
    pub limits: Limits,
    /// Upstream client settings.
    pub upstream: UpstreamConfig,
    /// Named services.
    pub services: Services,
    /// Static directory for `/`, when configured.
    pub static_dir: Option<PathBuf>,
    /// The route table.
    pub routes: RouteTable,
    /// Admin listener address (`None`: no admin listener).
    pub admin_listen: Option<SocketAddr>,
    /// Time `/readyz` fails before the listener closes at shutdown.
    pub drain_delay: Duration,
    /// Logging.
    pub log: LogConfig,
    /// The key files, for hot reload.
    pub key_watch: KeyWatch,
    /// TLS on the public listener (`None`: plain HTTP).
    pub tls: Option<TlsFiles>,
    /// Abuse limits.
    pub abuse: Abuse,
}

/// One thing wrong with a configuration: the key (or environment variable) at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key path (`limits.keepalive_timeout`), or the environment variable.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

impl Problem {
    fn new(key: &str, reason: impl Into<String>) -> Self {
        Problem {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Every problem [`FileConfig::validate`] found, in the order of the file's sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    fn push(&mut self, key: &str, reason: impl Into<String>) {
        self.0.push(Problem::new(key, reason));
    }

    /// Records a problem at `key` unless `ok`.
    fn check(&mut self, ok: bool, key: &str, reason: impl Into<String>) {
        if !ok {
            self.push(key, reason);
        }
    }
}

/// One line per problem: ``invalid value for `key`: reason``.
impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "invalid value for `{}`: {}", p.key, p.reason)?;
        }
        Ok(())
    }
}

/// Why a configuration cannot be used. Each problem names the key or file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse, has unknown keys or a value of the wrong type (the first such
    /// error, with its line and key).
    #[error("invalid config file")]
    Parse(#[from] toml::de::Error),
    /// Values are invalid or files named cannot be used: every one of them.
    #[error("{0}")]
    Invalid(Problems),
}

impl FileConfig {
    /// Parses TOML text; what it leaves out keeps its default (no environment).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Parses TOML text, then applies the [`Env::overlay`] to the keys the text leaves out.
    pub fn parse_with_env(text: &str, env: &Env) -> Result<Self, ConfigError> {
        let mut file = Self::parse(text)?;
        let table: toml::Table = toml::from_str(text)?;
        env.overlay(&mut file, |key| is_written(&table, key))?;
        Ok(file)
    }

    /// Reads and parses a file, with the [`Env::overlay`]; `None` is an empty file.
    pub fn read(path: Option<&Path>, env: &Env) -> Result<Self, ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?,
            None => String::new(),
        };
        Self::parse_with_env(&text, env)
    }

    /// The one check: every value in range, every address parsed, the key files read, the
    /// route table built. Reports every problem it finds, each with its key path.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let listen = self.listen.parse::<SocketAddr>().ok();
        problems.check(
            listen.is_some(),
            "listen",
            "expected an address like 0.0.0.0:30443",
        );

        let keys = &self.keys;
        let mut signing = Vec::new();
        for (key, path) in std::iter::once(("keys.signing_public_key", &keys.signing_public_key))
            .chain(
                keys.extra_signing_public_keys
                    .iter()
                    .map(|p| ("keys.extra_signing_public_keys", p)),
            )
        {
            match load_signing(path) {
                Ok(k) => signing.push(k),
                Err(reason) => problems.push(key, reason),
            }
        }
        let payload = match load_payload(&keys.payload_private_key, keys.payload_padding) {
            Ok(key) => Some(key),
            Err(reason) => {
                tracing::warn!(
                    path = %keys.payload_private_key.display(),
                    %reason,
                    "payload key unavailable; authenticated requests will get 503"
                );
                None
            }
        };
        problems.check(
            !keys.reload_interval.is_zero(),
            "keys.reload_interval",
            "must be positive",
        );

        problems.check(
            self.auth.max_token_len > 0,
            "auth.max_token_len",
            "must be positive",
        );
        check_dns_suffixes(&self.auth.dns_suffixes, &mut problems);
        self.limits.check(&mut problems);

        let s = &self.services;
        for (key, svc) in [
            ("services.pyos.host", &s.pyos),
            ("services.speedtest.host", &s.speedtest),
            ("services.console.host", &s.console),
            ("services.website.host", &s.website),
        ] {
            problems.check(usable_host(svc), key, "not a host name or IP address");
        }

        let admin_listen = match self.admin.listen.as_str() {
            "off" => None,
            text => {
                let addr = text.parse::<SocketAddr>().ok();
                problems.check(
                    addr.is_some(),
                    "admin.listen",
                    "expected an address like 0.0.0.0:9090, or \"off\"",
                );
                addr
            }
        };
        let tls = match (&self.tls.cert, &self.tls.key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            (None, None) => None,
            _ => {
                problems.push("tls", "set both cert and key, or neither");
                None
            }
        };
        if let Some(dir) = &self.website.static_dir {
            problems.check(
                dir.is_dir(),
                "website.static_dir",
                format!("{} is not a directory", dir.display()),
            );
        }
        let routes = RouteTable::abcdesktop(
            self.container.ports.clone(),
            self.website.static_dir.is_some(),
            &self.routes,
        )
        .map_err(|(key, reason)| problems.push(&key, reason))
        .ok();
        let grouping = self.clients.grouping(&mut problems);

        let (Some(listen), Some(routes), true) = (listen, routes, problems.0.is_empty()) else {
            return Err(ConfigError::Invalid(problems));
        };
        Ok(Config {
            listen,
            node_name: self.node_name,
            auth: self.auth.auth_config(),
            keys: Keys { signing, payload },
            limits: self.limits,
            upstream: self.upstream,
            services: self.services,
            static_dir: self.website.static_dir,
            routes,
            admin_listen,
            drain_delay: self.shutdown.drain_delay,
            log: self.log,
            key_watch: KeyWatch {
                sources: KeySources {
                    signing: std::iter::once(self.keys.signing_public_key)
                        .chain(self.keys.extra_signing_public_keys)
                        .collect(),
                    payload: self.keys.payload_private_key,
                    padding: self.keys.payload_padding,
                },
                interval: self.keys.reload_interval,
                overlap: self.keys.signing_overlap,
            },
            tls,
            abuse: Abuse {
                auth_failures_per_ip: self.abuse.auth_failures_per_ip,
                auth_failure_window: self.abuse.auth_failure_window,
                grouping,
            },
        })
    }
}

/// Whether the TOML `table` sets the dotted `key` (an inline table counts as a section).
fn is_written(table: &toml::Table, key: &str) -> bool {
    let mut table = table;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        match (table.get(part), parts.peek()) {
            (None, _) => return false,
            (Some(_), None) => return true,
            (Some(toml::Value::Table(inner)), Some(_)) => table = inner,
            // A scalar where a section was expected: the file sets it (and deserializing
            // it has already failed).
            (Some(_), Some(_)) => return true,
        }
    }
    false
}

/// Whether a service's host is an IP address or a DNS name (letters, digits, `-`, `_`, `.`,
/// at most 253 characters), and makes a valid URI with its port.
fn usable_host(svc: &ServiceAddr) -> bool {
    let host = svc.host.trim_start_matches('[').trim_end_matches(']');
    let is_ip = host.parse::<IpAddr>().is_ok();
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    (is_ip || is_name)
        && format!("http://{}/", svc.authority())
            .parse::<http::Uri>()
            .is_ok()
}

/// Each `auth.dns_suffixes` entry must be a DNS name itself (one optional leading dot): the
/// target rules are asked whether a name directly under it would pass, so a suffix is judged
/// by the very rules desktop names are, and `svc..cluster.local` cannot silently match nothing.
fn check_dns_suffixes(suffixes: &[String], problems: &mut Problems) {
    for suffix in suffixes {
        let probe = format!("a.{}", suffix.strip_prefix('.').unwrap_or(suffix));
        let alone = TargetPolicy {
            dns_suffixes: vec![suffix.clone()],
            allow_loopback: false,
        };
        problems.check(
            alone.validate(probe.as_bytes()).is_ok(),
            "auth.dns_suffixes",
            format!(
                "`{suffix}` is not a DNS name (labels of letters, digits and '-' joined by single dots)"
            ),
        );
    }
}

/// Loads a signing public key, or says (with the file and every cause) why it cannot be.
fn load_signing(path: &Path) -> Result<SigningKey, String> {
    let why = |e: &dyn std::error::Error| {
        let mut text = format!("cannot load signing public key {}: {e}", path.display());
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    };
    let text = std::fs::read_to_string(path).map_err(|e| why(&e))?;
    SigningKey::from_pem(&text).map_err(|e| why(&e))
}

/// Loads the payload key, or explains (for the startup warning) why there is none.
pub fn load_payload(path: &Path, padding: PayloadPadding) -> Result<PayloadKey, String> {
    // The private key's text is wiped once parsed.
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| e.to_string())?);
    PayloadKey::from_pem(&text, padding).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory holding a usable signing public key, and a config text naming it.
    fn with_signing_key() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pair = gateway_tooling::keygen::generate_pair(gateway_tooling::keygen::PAIRS[1], 1024)
            .unwrap_or_else(|e| panic!("{e}"));
        let key = dir.path().join("signing.pem");
        std::fs::write(&key, &pair.public_pem).unwrap_or_else(|e| panic!("{e}"));
        let text = format!(
            "[keys]\nsigning_public_key = {key:?}\npayload_private_key = \"/nonexistent\"\n"
        );
        (dir, text)
    }

    fn problems(text: &str) -> Vec<Problem> {
        let file = FileConfig::parse(text).unwrap_or_else(|e| panic!("{e}"));
        match file.validate() {
            Err(ConfigError::Invalid(Problems(list))) => list,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(FileConfig::parse("lisen = \"0.0.0.0:1\"").is_err());
        assert!(FileConfig::parse("[keys]\nsigning = \"x\"").is_err());
        assert!(FileConfig::parse("[routes.spawner]\nprot = 1").is_err());
        assert!(FileConfig::parse("[services.pyos]\nhots = \"x\"").is_err());
    }

    #[test]
    fn missing_signing_key_names_the_file() {
        let file = FileConfig::parse("[keys]\nsigning_public_key = \"/nonexistent/k.pem\"")
            .unwrap_or_default();
        let err = file.validate().err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("/nonexistent/k.pem"), "{text}");
    }

    #[test]
    fn validate_reports_every_problem_with_its_key_path() {
        let found = problems(
            "listen = \"nowhere\"\n\
             [keys]\nsigning_public_key = \"/nonexistent/k.pem\"\nreload_interval = \"0s\"\n\
             [limits]\nkeepalive_timeout = \"0s\"\nmax_header_bytes = 100\nworkers = 5000\n\
             [services.console]\nhost = \"a b\"\n\
             [admin]\nlisten = \"on\"\n\
             [tls]\ncert = \"/x.crt\"\n\
             [clients]\nipv6_prefix = 0\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy\"]\n",
        );
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "listen",
                "keys.signing_public_key",
                "keys.reload_interval",
                "limits.keepalive_timeout",
                "limits.workers",
                "limits.max_header_bytes",
                "services.console.host",
                "admin.listen",
                "tls",
                "clients.ipv6_prefix",
                "clients.trusted_proxies",
            ]
        );
        let text = Problems(found).to_string();
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(
            text.contains("invalid value for `limits.keepalive_timeout`: must be positive"),
            "{text}"
        );
        assert!(text.contains("/nonexistent/k.pem"), "{text}");
    }

    #[test]
    fn a_valid_file_has_no_problem_and_keeps_its_values() {
        let (_dir, keys) = with_signing_key();
        let text = format!(
            "listen = \"127.0.0.1:8080\"\n{keys}[limits]\nkeepalive_timeout = \"5s\"\n\
             [services.pyos]\nhost = \"10.0.0.9\"\n[upstream]\nresolver = [\"10.96.0.10\"]\n"
        );
        let file = FileConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let config = file.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(config.limits.keepalive_timeout, Duration::from_secs(5));
        // Only `host` written: pyos keeps its own default port.
        assert_eq!(config.services.pyos.authority(), "10.0.0.9:8000");
        assert_eq!(
            config.upstream.resolver,
            [SocketAddr::from(([10, 96, 0, 10], 53))]
        );
    }

    #[test]
    fn dns_suffixes_must_be_dns_names() {
        let (_dir, keys) = with_signing_key();
        let load = |suffixes: &str| {
            let text = format!("{keys}[auth]\ndns_suffixes = {suffixes}\n");
            let file = FileConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            file.validate()
        };
        for good in [
            r#"[".svc.cluster.local"]"#,
            r#"["desktop.abcdesktop.svc.cluster.local", ".Svc.Example-1.org"]"#,
            "[]",
        ] {
            assert!(load(good).is_ok(), "{good}");
        }
        for bad in [
            r#"["svc..cluster.local"]"#,
            r#"[".svc.cluster.local", ".svc..cluster.local"]"#,
            r#"[""]"#,
            r#"["."]"#,
            r#"["..svc.cluster.local"]"#,
            r#"["svc.cluster.local."]"#,
            r#"["*.cluster.local"]"#,
            r#"["svc_x.cluster.local"]"#,
            r#"["-svc.cluster.local"]"#,
            r#"["10.0.0.1"]"#,
        ] {
            let text = load(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(text.contains("auth.dns_suffixes"), "{bad}: {text:?}");
        }
    }

    #[test]
    fn env_is_used_when_the_file_is_silent() {
        let env = Env::from_fn(|name| match name {
            "PYOS_SERVICE_HOST" => Some("10.0.0.9".into()),
            "PYOS_SERVICE_PORT" => Some("8001".into()),
            "WEBSITE_FQDN" => Some(String::new()),
            _ => None,
        });
        assert_eq!(env.pyos_service_host.as_deref(), Some("10.0.0.9"));
        assert_eq!(env.website_fqdn, None);
        let svc = FileConfig::parse_with_env("", &env)
            .unwrap_or_else(|e| panic!("{e}"))
            .services;
        assert_eq!(svc.pyos.authority(), "10.0.0.9:8001");
        assert_eq!(svc.website.authority(), "website:80");
        let env = Env {
            pyos_fqdn: Some("ignored".into()),
            ..Env::default()
        };
        let explicit = "[services.pyos]\nhost = \"pyos.abcdesktop\"\n";
        assert_eq!(
            FileConfig::parse_with_env(explicit, &env)
                .unwrap_or_else(|e| panic!("{e}"))
                .services
                .pyos
                .authority(),
            "pyos.abcdesktop:8000"
        );
    }

    #[test]
    fn the_file_wins_over_the_environment_key_by_key() {
        let env = Env {
            signing_public_key: Some("/env/signing.pem".into()),
            payload_private_key: Some("/env/payload.pem".into()),
            node_name: Some("env-node".into()),
            pyos_service_port: Some("8001".into()),
            nameserver_resolver: Some("10.0.0.1 10.0.0.2:5353".into()),
            ..Env::default()
        };
        let text = "node_name = \"file-node\"\n[keys]\nsigning_public_key = \"/file/s.pem\"\n\
                    [services.pyos]\nport = 9000\n";
        let file = FileConfig::parse_with_env(text, &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.node_name, "file-node");
        assert_eq!(file.keys.signing_public_key, Path::new("/file/s.pem"));
        assert_eq!(file.keys.payload_private_key, Path::new("/env/payload.pem"));
        assert_eq!(file.services.pyos.port, 9000);
        assert_eq!(
            file.upstream.resolver,
            [
                SocketAddr::from(([10, 0, 0, 1], 53)),
                SocketAddr::from(([10, 0, 0, 2], 5353))
            ]
        );
        // An unusable variable is named, but only when the file leaves its key to it.
        let bad_port = Env {
            pyos_service_port: Some("eighty".into()),
            ..Env::default()
        };
        let err = FileConfig::parse_with_env("", &bad_port).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "invalid value for `PYOS_SERVICE_PORT`: not a port number"
        );
        assert!(FileConfig::parse_with_env("[services.pyos]\nport = 1\n", &bad_port).is_ok());
    }

    #[test]
    fn wrongly_typed_values_name_their_line_and_key() {
        let err = FileConfig::parse("[limits]\nsend_timeout = \"soon\"\n").err();
        let text = err
            .map(|e| format!("{:#}", anyhow::Error::from(e)))
            .unwrap_or_default();
        assert!(
            text.contains("line 2") && text.contains("send_timeout"),
            "{text}"
        );
        let err = FileConfig::parse("[upstream]\nport_map = { \"x\" = 1 }\n").err();
        let text = err
            .map(|e| format!("{:#}", anyhow::Error::from(e)))
            .unwrap_or_default();
        assert!(text.contains("`x` is not a port"), "{text}");
    }
}

//! The gateway's configuration: one TOML file (`--config`), parsed in two stages.
//!
//! [`FileConfig`] is the file as written (every struct `deny_unknown_fields`, every value
//! optional so an absent key can fall back to the original gateway's environment variable and
//! then to a documented default). [`Config::load`] turns it into a validated [`Config`]: it
//! reads the key files, builds the route table and checks every value, so [`crate::server::serve`]
//! cannot fail on configuration.
//!
//! Precedence for each setting: the config file, then the original's environment variable
//! ([`Env`], read by `main.rs` only), then the default constant.
//!
//! A payload key that is missing or unusable does not stop the gateway: it starts, logs a
//! warning and answers authenticated requests with 503 (the original did the same per request).
//! The signing key is required: without it no token can ever pass.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::reload::{self, KeySources};
use crate::routes::{self, RouteOverride, RouteTable};
use crate::telemetry::LogFormat;
use crate::token::{
    AuthConfig, CacheConfig, Keys, PayloadKey, PayloadPadding, SigningKey, TargetPolicy,
};

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

/// The original gateway's environment variables, read by `main.rs` and passed in (tests build
/// this struct directly and never touch the process environment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    /// `JWT_DESKTOP_SIGNING_PUBLIC_KEY`: path of the signing public key.
    pub signing_public_key: Option<String>,
    /// `JWT_DESKTOP_PAYLOAD_PRIVATE_KEY`: path of the payload private key.
    pub payload_private_key: Option<String>,
    /// `NODE_NAME`: what `GET /node` answers.
    pub node_name: Option<String>,
    /// `PYOS_FQDN`: pyos host.
    pub pyos_fqdn: Option<String>,
    /// `PYOS_SERVICE_HOST`: pyos host when `PYOS_FQDN` is unset (Kubernetes service link).
    pub pyos_service_host: Option<String>,
    /// `PYOS_SERVICE_PORT`: pyos port.
    pub pyos_service_port: Option<String>,
    /// `SPEEDTEST_FQDN`.
    pub speedtest_fqdn: Option<String>,
    /// `CONSOLE_FQDN`.
    pub console_fqdn: Option<String>,
    /// `WEBSITE_FQDN`.
    pub website_fqdn: Option<String>,
    /// `NAMESERVER_RESOLVER`: the DNS server for desktop names (route's entrypoint).
    pub nameserver_resolver: Option<String>,
}

impl Env {
    /// Reads the variables through `get` (`main.rs` passes `std::env::var`).
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
}

// === the file ===

/// The TOML file as written. See `manifests/gateway.example.toml` for every key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Listen address.
    pub listen: Option<String>,
    /// What `GET /node` answers (default: env `NODE_NAME`, else empty).
    pub node_name: Option<String>,
    /// Key files.
    #[serde(default)]
    pub keys: FileKeys,
    /// Token pipeline settings.
    #[serde(default)]
    pub auth: FileAuth,
    /// Client-side limits.
    #[serde(default)]
    pub limits: FileLimits,
    /// Upstream client settings.
    #[serde(default)]
    pub upstream: FileUpstream,
    /// Named services (pyos, speedtest, console, website).
    #[serde(default)]
    pub services: FileServices,
    /// The `/` route: a static directory instead of the `website` service.
    #[serde(default)]
    pub website: FileWebsite,
    /// The `/container/…` routes.
    #[serde(default)]
    pub container: FileContainer,
    /// Per-route overrides, by route name.
    #[serde(default)]
    pub routes: BTreeMap<String, RouteOverride>,
    /// The admin listener.
    #[serde(default)]
    pub admin: FileAdmin,
    /// Shutdown sequence.
    #[serde(default)]
    pub shutdown: FileShutdown,
    /// Logging.
    #[serde(default)]
    pub log: FileLog,
    /// TLS on the public listener.
    #[serde(default)]
    pub tls: FileTls,
    /// Abuse limits.
    #[serde(default)]
    pub abuse: FileAbuse,
    /// How client addresses are told apart.
    #[serde(default)]
    pub clients: FileClients,
}

/// `[abuse]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAbuse {
    /// Refused tokens per client address and window before 429; 0 disables.
    pub auth_failures_per_ip: Option<u32>,
    /// The counting window.
    #[serde(default, with = "opt_duration")]
    pub auth_failure_window: Option<Duration>,
}

/// `[clients]`: how client addresses are told apart (used by the `[abuse]` throttle).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClients {
    /// IPv6 clients are counted by this prefix length (1–128).
    pub ipv6_prefix: Option<u8>,
    /// Addresses or CIDRs whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
}

/// `[admin]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    /// Listen address of `/metrics`, `/livez`, `/readyz`; `"off"` disables the listener.
    pub listen: Option<String>,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileShutdown {
    /// Time `/readyz` fails before new connections are refused.
    #[serde(default, with = "opt_duration")]
    pub drain_delay: Option<Duration>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    /// `text` or `json` (the `--log-format` flag wins).
    pub format: Option<LogFormat>,
    /// One line per request at `info` (target `access`).
    pub access_log: Option<bool>,
    /// Authentication-failure access lines per second at most.
    pub auth_failure_lines_per_second: Option<u32>,
}

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTls {
    /// Certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
}

/// `[keys]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileKeys {
    /// Signing public key (PEM).
    pub signing_public_key: Option<PathBuf>,
    /// Payload private key (PEM; an `RSA PUBLIC KEY` selects the documented reverse mode).
    pub payload_private_key: Option<PathBuf>,
    /// Padding pyos used for `hash`.
    pub payload_padding: Option<PayloadPadding>,
    /// More signing public keys accepted beside the main one (a manual rotation).
    pub extra_signing_public_keys: Option<Vec<PathBuf>>,
    /// How often the key files are re-read.
    #[serde(default, with = "opt_duration")]
    pub reload_interval: Option<Duration>,
    /// How long a replaced signing key stays accepted.
    #[serde(default, with = "opt_duration")]
    pub signing_overlap: Option<Duration>,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    /// Longest token accepted, in bytes.
    pub max_token_len: Option<usize>,
    /// Clock leeway on `exp`/`nbf`, in seconds.
    pub leeway: Option<u64>,
    /// DNS suffixes a decrypted target name must end with.
    pub dns_suffixes: Option<Vec<String>>,
    /// Accept loopback targets (demo and tests only).
    pub allow_loopback: Option<bool>,
    /// Longest time a token's target is cached.
    #[serde(default, with = "opt_duration")]
    pub cache_max_ttl: Option<Duration>,
    /// Positive cache bound.
    pub cache_max_entries: Option<u64>,
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    /// Concurrent client connections.
    pub max_connections: Option<usize>,
    /// Time to receive a request head.
    #[serde(default, with = "opt_duration")]
    pub header_read_timeout: Option<Duration>,
    /// Largest request head, in bytes.
    pub max_header_bytes: Option<usize>,
    /// Grace period for in-flight requests at shutdown.
    #[serde(default, with = "opt_duration")]
    pub shutdown_grace: Option<Duration>,
    /// HTTP/2: concurrent streams per connection.
    pub h2_max_concurrent_streams: Option<u32>,
    /// HTTP/2: streams a client may reset before they are accepted (rapid-reset bound).
    pub h2_max_pending_accept_reset_streams: Option<usize>,
    /// HTTP/2: streams the server may reset for protocol errors (MadeYouReset bound).
    pub h2_max_local_error_reset_streams: Option<usize>,
    /// Threads serving connections (0: one per CPU the process may run on).
    pub workers: Option<usize>,
    /// Idle time allowed between requests.
    #[serde(default, with = "opt_duration")]
    pub keepalive_timeout: Option<Duration>,
    /// Longest wait between two reads of a request body.
    #[serde(default, with = "opt_duration")]
    pub client_body_timeout: Option<Duration>,
    /// Longest wait for a client to take a write.
    #[serde(default, with = "opt_duration")]
    pub send_timeout: Option<Duration>,
    /// HTTP/2 PING interval.
    #[serde(default, with = "opt_duration")]
    pub h2_keepalive_interval: Option<Duration>,
    /// HTTP/2 PING answer timeout.
    #[serde(default, with = "opt_duration")]
    pub h2_keepalive_timeout: Option<Duration>,
    /// Serve HTTP/2 with prior knowledge (h2c) on the plaintext listener too.
    pub h2c: Option<bool>,
    /// Concurrent connections per client address (0: no cap).
    pub max_connections_per_ip: Option<usize>,
}

/// `[upstream]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    /// TCP connect timeout (including name resolution).
    #[serde(default, with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
    /// Idle pooled connection lifetime.
    #[serde(default, with = "opt_duration")]
    pub pool_idle_timeout: Option<Duration>,
    /// Idle pooled connections per host.
    pub pool_max_idle_per_host: Option<usize>,
    /// Dial-time port translation `{ "6081" = 16081 }`: the demo and tests use it to run fake
    /// desktop services on ephemeral ports. Empty in production.
    pub port_map: Option<BTreeMap<String, u16>>,
    /// DNS servers for desktop names (`"10.96.0.10"` or `"10.96.0.10:53"`); default: env
    /// `NAMESERVER_RESOLVER`, else the system's (`/etc/resolv.conf`).
    pub resolver: Option<Vec<String>>,
}

/// One named service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    /// Host name or IP.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
}

/// `[services.*]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServices {
    /// pyos (API and auth routes).
    #[serde(default)]
    pub pyos: FileService,
    /// speedtest.
    #[serde(default)]
    pub speedtest: FileService,
    /// console.
    #[serde(default)]
    pub console: FileService,
    /// website (`/`).
    #[serde(default)]
    pub website: FileService,
}

/// `[website]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWebsite {
    /// Serve `/` from this directory (3.0–3.2 behaviour) instead of the `website` service.
    pub static_dir: Option<PathBuf>,
}

/// `[container]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileContainer {
    /// Ports `/container/<jwt>/<port>` and `/container/<port>` may reach.
    pub ports: Option<Vec<u16>>,
}

// === the validated config ===

/// A host and port of a named service; resolved at request time, never at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAddr {
    /// Host name or IP literal.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ServiceAddr {
    /// `host:port`, IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The named services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Services {
    /// pyos.
    pub pyos: ServiceAddr,
    /// speedtest.
    pub speedtest: ServiceAddr,
    /// console.
    pub console: ServiceAddr,
    /// website.
    pub website: ServiceAddr,
}

/// Client-side limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`DEFAULT_KEEPALIVE_TIMEOUT`].
    pub keepalive_timeout: Duration,
    /// See [`DEFAULT_CLIENT_BODY_TIMEOUT`].
    pub client_body_timeout: Duration,
    /// See [`DEFAULT_SEND_TIMEOUT`].
    pub send_timeout: Duration,
    /// See [`DEFAULT_H2_KEEPALIVE_INTERVAL`].
    pub h2_keepalive_interval: Duration,
    /// See [`DEFAULT_H2_KEEPALIVE_TIMEOUT`].
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
    pub shutdown_grace: Duration,
    /// See [`DEFAULT_H2_MAX_CONCURRENT_STREAMS`].
    pub h2_max_concurrent_streams: u32,
    /// See [`DEFAULT_H2_MAX_PENDING_ACCEPT_RESET_STREAMS`].
    pub h2_max_pending_accept_reset_streams: usize,
    /// See [`DEFAULT_H2_MAX_LOCAL_ERROR_RESET_STREAMS`].
    pub h2_max_local_error_reset_streams: usize,
    /// Threads serving connections, each with its own single-threaded runtime and upstream
    /// pool; 0 means one per CPU the process may run on (its affinity mask, so `taskset` and
    /// cgroup CPU sets count). See [`Limits::worker_threads`].
    pub workers: usize,
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
}

/// Abuse limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abuse {
    /// Refused tokens per client address and window before 429; 0 disables.
    pub auth_failures_per_ip: u32,
    /// The counting window.
    pub auth_failure_window: Duration,
    /// How clients are told apart (IPv6 prefix, trusted proxies).
    pub grouping: crate::throttle::Grouping,
}

/// Upstream client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_POOL_IDLE_TIMEOUT`].
    pub pool_idle_timeout: Duration,
    /// See [`DEFAULT_POOL_MAX_IDLE_PER_HOST`].
    pub pool_max_idle_per_host: usize,
    /// Dial-time port translation (demo and tests).
    pub port_map: BTreeMap<u16, u16>,
    /// DNS servers for desktop names; empty = the system's.
    pub resolver: Vec<SocketAddr>,
}

impl UpstreamConfig {
    /// The port actually dialled for `port`.
    pub fn dial_port(&self, port: u16) -> u16 {
        self.port_map.get(&port).copied().unwrap_or(port)
    }
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Whether each request gets an access-log line.
    pub access_log: bool,
    /// Authentication-failure access lines per second at most.
    pub auth_failure_lines_per_second: u32,
}

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

/// Why a configuration cannot be used. Each variant names the key or file at fault.
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
    /// The TOML does not parse or has unknown keys.
    #[error("invalid config file")]
    Parse(#[from] toml::de::Error),
    /// A value is invalid.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The signing key cannot be read or used.
    #[error("cannot load signing public key {path}")]
    SigningKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl FileConfig {
    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Ok(toml::from_str(text)?)
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }
}

/// Whether a service's host is an IP address or a DNS name (letters, digits, `-`, `_`, `.`,
/// at most 253 characters), and makes a valid URI with its port.
fn usable_host(svc: &ServiceAddr) -> bool {
    let host = svc.host.trim_start_matches('[').trim_end_matches(']');
    let is_ip = host.parse::<std::net::IpAddr>().is_ok();
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

fn service(file: &FileService, env_host: Option<&String>, host: &str, port: u16) -> ServiceAddr {
    ServiceAddr {
        host: file
            .host
            .clone()
            .or_else(|| env_host.cloned())
            .unwrap_or_else(|| host.to_owned()),
        port: file.port.unwrap_or(port),
    }
}

/// `[clients]`.
fn client_grouping(file: &FileClients) -> Result<crate::throttle::Grouping, ConfigError> {
    let ipv6_prefix = file
        .ipv6_prefix
        .unwrap_or(crate::throttle::DEFAULT_IPV6_PREFIX);
    if !(1..=128).contains(&ipv6_prefix) {
        return Err(invalid("clients.ipv6_prefix", "expected 1 to 128"));
    }
    let mut trusted_proxies = Vec::new();
    for text in file.trusted_proxies.iter().flatten() {
        // A bare address is a single-address network.
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                invalid(
                    "clients.trusted_proxies",
                    "expected addresses or CIDRs like 10.0.0.0/8",
                )
            })?;
        trusted_proxies.push(net);
    }
    Ok(crate::throttle::Grouping {
        ipv6_prefix,
        trusted_proxies,
    })
}

/// Each `auth.dns_suffixes` entry must be a DNS name itself (one optional leading dot): the
/// target rules are asked whether a name directly under it would pass, so a suffix is judged
/// by the very rules desktop names are, and `svc..cluster.local` cannot silently match nothing.
fn check_dns_suffixes(suffixes: &[String]) -> Result<(), ConfigError> {
    for suffix in suffixes {
        let probe = format!("a.{}", suffix.strip_prefix('.').unwrap_or(suffix));
        let alone = TargetPolicy {
            dns_suffixes: vec![suffix.clone()],
            allow_loopback: false,
        };
        if alone.validate(probe.as_bytes()).is_err() {
            return Err(invalid(
                "auth.dns_suffixes",
                format!(
                    "`{suffix}` is not a DNS name (labels of letters, digits and '-' joined by single dots)"
                ),
            ));
        }
    }
    Ok(())
}

/// Loads the payload key, or explains (for the startup warning) why there is none.
pub fn load_payload(path: &Path, padding: PayloadPadding) -> Result<PayloadKey, String> {
    // The private key's text is wiped once parsed.
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| e.to_string())?);
    PayloadKey::from_pem(&text, padding).map_err(|e| e.to_string())
}

impl Config {
    /// Validates `file`, falling back to `env` and then to the defaults, and loads the keys.
    pub fn load(file: FileConfig, env: &Env) -> Result<Config, ConfigError> {
        let listen_text = file.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen: SocketAddr = listen_text
            .parse()
            .map_err(|_| invalid("listen", "expected an address like 0.0.0.0:30443"))?;

        let signing_path = file
            .keys
            .signing_public_key
            .clone()
            .or_else(|| env.signing_public_key.clone().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SIGNING_KEY));
        let signing_text =
            std::fs::read_to_string(&signing_path).map_err(|e| ConfigError::SigningKey {
                path: signing_path.clone(),
                source: Box::new(e),
            })?;
        let signing = SigningKey::from_pem(&signing_text).map_err(|e| ConfigError::SigningKey {
            path: signing_path.clone(),
            source: Box::new(e),
        })?;
        let extra_signing_paths = file
            .keys
            .extra_signing_public_keys
            .clone()
            .unwrap_or_default();
        let mut signing_keys = vec![signing];
        for path in &extra_signing_paths {
            let key = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::SigningKey {
                    path: path.clone(),
                    source: Box::new(e),
                })
                .and_then(|text| {
                    SigningKey::from_pem(&text).map_err(|e| ConfigError::SigningKey {
                        path: path.clone(),
                        source: Box::new(e),
                    })
                })?;
            signing_keys.push(key);
        }

        let payload_path = file
            .keys
            .payload_private_key
            .clone()
            .or_else(|| env.payload_private_key.clone().map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PAYLOAD_KEY));
        let padding = file.keys.payload_padding.unwrap_or_default();
        let payload = match load_payload(&payload_path, padding) {
            Ok(key) => Some(key),
            Err(reason) => {
                tracing::warn!(
                    path = %payload_path.display(),
                    %reason,
                    "payload key unavailable; authenticated requests will get 503"
                );
                None
            }
        };

        let defaults = AuthConfig::default();
        let mut cache = CacheConfig::default();
        if let Some(ttl) = file.auth.cache_max_ttl {
            cache.max_ttl = ttl;
        }
        if let Some(n) = file.auth.cache_max_entries {
            cache.max_entries = n;
        }
        let max_token_len = file.auth.max_token_len.unwrap_or(defaults.max_token_len);
        if max_token_len == 0 {
            return Err(invalid("auth.max_token_len", "must be positive"));
        }
        let auth = AuthConfig {
            max_token_len,
            leeway: file.auth.leeway.unwrap_or(defaults.leeway),
            target: TargetPolicy {
                dns_suffixes: file
                    .auth
                    .dns_suffixes
                    .clone()
                    .unwrap_or(defaults.target.dns_suffixes),
                allow_loopback: file
                    .auth
                    .allow_loopback
                    .unwrap_or(defaults.target.allow_loopback),
            },
            cache,
        };
        check_dns_suffixes(&auth.target.dns_suffixes)?;

        let limits = Limits {
            max_connections: file
                .limits
                .max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            header_read_timeout: file
                .limits
                .header_read_timeout
                .unwrap_or(DEFAULT_HEADER_READ_TIMEOUT),
            max_header_bytes: file
                .limits
                .max_header_bytes
                .unwrap_or(DEFAULT_MAX_HEADER_BYTES),
            shutdown_grace: file.limits.shutdown_grace.unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            h2_max_concurrent_streams: file
                .limits
                .h2_max_concurrent_streams
                .unwrap_or(DEFAULT_H2_MAX_CONCURRENT_STREAMS),
            h2_max_pending_accept_reset_streams: file
                .limits
                .h2_max_pending_accept_reset_streams
                .unwrap_or(DEFAULT_H2_MAX_PENDING_ACCEPT_RESET_STREAMS),
            h2_max_local_error_reset_streams: file
                .limits
                .h2_max_local_error_reset_streams
                .unwrap_or(DEFAULT_H2_MAX_LOCAL_ERROR_RESET_STREAMS),
            workers: file.limits.workers.unwrap_or(0),
            keepalive_timeout: file
                .limits
                .keepalive_timeout
                .unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT),
            client_body_timeout: file
                .limits
                .client_body_timeout
                .unwrap_or(DEFAULT_CLIENT_BODY_TIMEOUT),
            send_timeout: file.limits.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT),
            h2_keepalive_interval: file
                .limits
                .h2_keepalive_interval
                .unwrap_or(DEFAULT_H2_KEEPALIVE_INTERVAL),
            h2_keepalive_timeout: file
                .limits
                .h2_keepalive_timeout
                .unwrap_or(DEFAULT_H2_KEEPALIVE_TIMEOUT),
            h2c: file.limits.h2c.unwrap_or(false),
            max_connections_per_ip: file.limits.max_connections_per_ip.unwrap_or(0),
        };
        for (key, value) in [
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.keepalive_timeout", limits.keepalive_timeout),
            ("limits.client_body_timeout", limits.client_body_timeout),
            ("limits.send_timeout", limits.send_timeout),
            ("limits.h2_keepalive_interval", limits.h2_keepalive_interval),
            ("limits.h2_keepalive_timeout", limits.h2_keepalive_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be positive"));
            }
        }
        if limits.workers > MAX_WORKERS {
            return Err(invalid(
                "limits.workers",
                format!("must be at most {MAX_WORKERS}"),
            ));
        }
        if limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be positive"));
        }
        // hyper's HTTP/1 read buffer cannot be smaller than 8 KiB.
        if limits.max_header_bytes < 8192 {
            return Err(invalid("limits.max_header_bytes", "must be at least 8192"));
        }

        let mut port_map = BTreeMap::new();
        for (from, to) in file.upstream.port_map.clone().unwrap_or_default() {
            let from: u16 = from
                .parse()
                .map_err(|_| invalid("upstream.port_map", format!("`{from}` is not a port")))?;
            port_map.insert(from, to);
        }
        let resolver_texts = file.upstream.resolver.clone().unwrap_or_else(|| {
            env.nameserver_resolver
                .iter()
                .flat_map(|v| v.split_whitespace().map(str::to_owned))
                .collect()
        });
        let mut resolver = Vec::new();
        for text in &resolver_texts {
            let addr = text
                .parse::<SocketAddr>()
                .or_else(|_| {
                    text.parse::<std::net::IpAddr>()
                        .map(|ip| SocketAddr::new(ip, 53))
                })
                .map_err(|_| {
                    invalid(
                        "upstream.resolver",
                        format!("`{text}` is not an IP address"),
                    )
                })?;
            resolver.push(addr);
        }
        let upstream = UpstreamConfig {
            connect_timeout: file
                .upstream
                .connect_timeout
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            pool_idle_timeout: file
                .upstream
                .pool_idle_timeout
                .unwrap_or(DEFAULT_POOL_IDLE_TIMEOUT),
            pool_max_idle_per_host: file
                .upstream
                .pool_max_idle_per_host
                .unwrap_or(DEFAULT_POOL_MAX_IDLE_PER_HOST),
            port_map,
            resolver,
        };

        let pyos_port = match (file.services.pyos.port, &env.pyos_service_port) {
            (Some(p), _) => p,
            (None, Some(text)) => text
                .parse()
                .map_err(|_| invalid("PYOS_SERVICE_PORT", "not a port number"))?,
            (None, None) => DEFAULT_PYOS_PORT,
        };
        let pyos_env_host = env.pyos_fqdn.as_ref().or(env.pyos_service_host.as_ref());
        let services = Services {
            pyos: service(
                &file.services.pyos,
                pyos_env_host,
                DEFAULT_PYOS_HOST,
                pyos_port,
            ),
            speedtest: service(
                &file.services.speedtest,
                env.speedtest_fqdn.as_ref(),
                DEFAULT_SPEEDTEST_HOST,
                DEFAULT_SERVICE_PORT,
            ),
            console: service(
                &file.services.console,
                env.console_fqdn.as_ref(),
                DEFAULT_CONSOLE_HOST,
                DEFAULT_SERVICE_PORT,
            ),
            website: service(
                &file.services.website,
                env.website_fqdn.as_ref(),
                DEFAULT_WEBSITE_HOST,
                DEFAULT_SERVICE_PORT,
            ),
        };
        for (key, svc) in [
            ("services.pyos.host", &services.pyos),
            ("services.speedtest.host", &services.speedtest),
            ("services.console.host", &services.console),
            ("services.website.host", &services.website),
        ] {
            if !usable_host(svc) {
                return Err(invalid(key, "not a host name or IP address"));
            }
        }

        let admin_listen = match file.admin.listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN) {
            "off" => None,
            text => Some(text.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "admin.listen",
                    "expected an address like 0.0.0.0:9090, or \"off\"",
                )
            })?),
        };
        let log = LogConfig {
            format: file.log.format.unwrap_or_default(),
            access_log: file.log.access_log.unwrap_or(true),
            auth_failure_lines_per_second: file
                .log
                .auth_failure_lines_per_second
                .unwrap_or(DEFAULT_AUTH_FAILURE_LOG_RATE),
        };
        let key_watch = KeyWatch {
            sources: KeySources {
                signing: std::iter::once(signing_path)
                    .chain(extra_signing_paths)
                    .collect(),
                payload: payload_path,
                padding,
            },
            interval: file
                .keys
                .reload_interval
                .unwrap_or(reload::DEFAULT_INTERVAL),
            overlap: file.keys.signing_overlap.unwrap_or(reload::DEFAULT_OVERLAP),
        };
        if key_watch.interval.is_zero() {
            return Err(invalid("keys.reload_interval", "must be positive"));
        }
        let tls = match (file.tls.cert.clone(), file.tls.key.clone()) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => return Err(invalid("tls", "set both cert and key, or neither")),
        };

        let static_dir = file.website.static_dir.clone();
        if let Some(dir) = &static_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "website.static_dir",
                format!("{} is not a directory", dir.display()),
            ));
        }

        let container_ports = file
            .container
            .ports
            .clone()
            .unwrap_or_else(|| routes::DEFAULT_CONTAINER_PORTS.to_vec());
        let routes = RouteTable::abcdesktop(container_ports, static_dir.is_some(), &file.routes)
            .map_err(|(key, reason)| invalid(&key, reason))?;

        Ok(Config {
            listen,
            node_name: file
                .node_name
                .clone()
                .or_else(|| env.node_name.clone())
                .unwrap_or_default(),
            auth,
            keys: Keys {
                signing: signing_keys,
                payload,
            },
            limits,
            upstream,
            services,
            static_dir,
            routes,
            admin_listen,
            drain_delay: file.shutdown.drain_delay.unwrap_or(DEFAULT_DRAIN_DELAY),
            log,
            key_watch,
            tls,
            abuse: Abuse {
                auth_failures_per_ip: file
                    .abuse
                    .auth_failures_per_ip
                    .unwrap_or(crate::throttle::DEFAULT_LIMIT),
                auth_failure_window: file
                    .abuse
                    .auth_failure_window
                    .unwrap_or(crate::throttle::DEFAULT_WINDOW),
                grouping: client_grouping(&file.clients)?,
            },
        })
    }

    /// Reads `path` (or uses an empty file when `None`) and [`Config::load`]s it.
    pub fn from_path(path: Option<&Path>, env: &Env) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Config::load(file, env)
    }
}

/// Parses an nginx-style size: `1024`, `8k`, `8M`, `8G` (case-insensitive, powers of 1024).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, mult) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1024),
        (i, 'm' | 'M') => (&text[..i], 1024 * 1024),
        (i, 'g' | 'G') => (&text[..i], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(mult)
}

/// Serde helpers for humantime durations (`"60s"`, `"1h"`).
pub(crate) mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Serde helper for nginx-style sizes.
pub(crate) mod opt_size {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Num(u64),
        Text(String),
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Raw>::deserialize(d)? {
            None => Ok(None),
            Some(Raw::Num(n)) => Ok(Some(n)),
            Some(Raw::Text(t)) => super::parse_size(&t)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a size like 8M"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_nginx() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("8k"), Some(8192));
        assert_eq!(parse_size("8M"), Some(8 << 20));
        assert_eq!(parse_size("8g"), Some(8 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(FileConfig::parse("lisen = \"0.0.0.0:1\"").is_err());
        assert!(FileConfig::parse("[keys]\nsigning = \"x\"").is_err());
        assert!(FileConfig::parse("[routes.spawner]\nprot = 1").is_err());
    }

    #[test]
    fn missing_signing_key_names_the_file() {
        let file = FileConfig::parse("[keys]\nsigning_public_key = \"/nonexistent/k.pem\"")
            .unwrap_or_default();
        let err = Config::load(file, &Env::default()).err();
        let text = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.contains("/nonexistent/k.pem"), "{text}");
    }

    #[test]
    fn dns_suffixes_must_be_dns_names() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let pair = gateway_tooling::keygen::generate_pair(gateway_tooling::keygen::PAIRS[1], 1024)
            .unwrap_or_else(|e| panic!("{e}"));
        let key = dir.path().join("signing.pem");
        std::fs::write(&key, &pair.public_pem).unwrap_or_else(|e| panic!("{e}"));
        let load = |suffixes: &str| {
            let text = format!(
                "[keys]\nsigning_public_key = {key:?}\npayload_private_key = \"/nonexistent\"\n[auth]\ndns_suffixes = {suffixes}\n"
            );
            let file = FileConfig::parse(&text).unwrap_or_else(|e| panic!("{e}"));
            Config::load(file, &Env::default())
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
        let svc = service(
            &FileService::default(),
            env.pyos_fqdn.as_ref().or(env.pyos_service_host.as_ref()),
            DEFAULT_PYOS_HOST,
            8001,
        );
        assert_eq!(svc.authority(), "10.0.0.9:8001");
        let explicit = FileService {
            host: Some("pyos.abcdesktop".into()),
            port: None,
        };
        assert_eq!(
            service(&explicit, Some(&"ignored".to_owned()), "pyos", 8000).authority(),
            "pyos.abcdesktop:8000"
        );
    }
}

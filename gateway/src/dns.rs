//! Asynchronous name resolution, with hickory-resolver and its TTL-respecting cache: one
//! resolver, one cache and one timeout for every name the gateway dials.
//!
//! - Desktop targets that are DNS names (pyos with `useinternalfqdn`) are resolved as absolute
//!   names (a trailing dot is added), like nginx's `resolver`, which ignores search domains
//!   ([`Dns::resolve`]).
//! - Named services (pyos, website, …) are resolved as the system resolver would: search
//!   domains and `ndots` from `/etc/resolv.conf` apply (`pyos` finds
//!   `pyos.<namespace>.svc.cluster.local` in a pod), `/etc/hosts` first, IP literals as they
//!   are ([`Dns::resolve_service`]).
//!
//! The configuration comes from the system (`/etc/resolv.conf`, `/etc/hosts`), read when the
//! gateway starts; `[upstream] resolver` (env `NAMESERVER_RESOLVER`) replaces its name
//! servers and keeps its search domains. Nothing is resolved until a request needs it; a name
//! that does not resolve in time gives the request a fast 502.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use tracing::warn;

/// Entries kept in the resolver's cache (hickory's default is 32; a node may serve
/// thousands of desktops).
pub const CACHE_SIZE: usize = 4096;

/// Why a name could not be turned into an address.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// No system DNS configuration could be read at startup.
    #[error("no DNS resolver configured")]
    NoResolver,
    /// The lookup did not finish in time.
    #[error("DNS lookup timed out")]
    Timeout,
    /// The answer held no address.
    #[error("DNS answer without an address")]
    NoAddress,
    /// The lookup failed (NXDOMAIN, no answer, server failure).
    #[error("DNS lookup failed")]
    Lookup(#[source] hickory_resolver::ResolveError),
}

/// The gateway's one resolver (desktop names and named services).
#[derive(Debug)]
pub struct Dns {
    resolver: Option<TokioResolver>,
    timeout: Duration,
}

impl Dns {
    /// The system's resolver, asking `servers` (UDP, then TCP) instead of the system's name
    /// servers when given. Without a system configuration, `servers` alone (no search
    /// domains); without either, every lookup fails (and a warning says so once, here).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Self {
        let system = hickory_resolver::system_conf::read_system_conf();
        let (config, mut options) = match (system, servers.is_empty()) {
            (Ok((config, options)), true) => (config, options),
            (system, false) => {
                let group: Vec<NameServerConfig> = servers
                    .iter()
                    .flat_map(|addr| {
                        [
                            NameServerConfig::new(*addr, Protocol::Udp),
                            NameServerConfig::new(*addr, Protocol::Tcp),
                        ]
                    })
                    .collect();
                let (domain, search, options) = match system {
                    Ok((config, options)) => {
                        (config.domain().cloned(), config.search().to_vec(), options)
                    }
                    Err(_) => (None, Vec::new(), ResolverOpts::default()),
                };
                (ResolverConfig::from_parts(domain, search, group), options)
            }
            (Err(e), true) => {
                warn!(error = %e, "no system DNS configuration; names will not resolve");
                return Dns {
                    resolver: None,
                    timeout,
                };
            }
        };
        options.cache_size = CACHE_SIZE;
        let resolver =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
                .with_options(options)
                .build();
        Dns {
            resolver: Some(resolver),
            timeout,
        }
    }

    /// The first address of the desktop name `name`, as an absolute name, within the timeout.
    pub async fn resolve(&self, name: &str) -> Result<IpAddr, DnsError> {
        let absolute = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        // Boxed (as below): the resolver's state stays out of the futures of requests that
        // need no lookup.
        Box::pin(self.lookup(absolute)).await
    }

    /// The first address of a named service's `host` (search domains apply; an IP literal,
    /// bracketed or not, is its own address), within the timeout.
    pub async fn resolve_service(&self, host: &str) -> Result<IpAddr, DnsError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(ip);
        }
        Box::pin(self.lookup(host.to_owned())).await
    }

    async fn lookup(&self, name: String) -> Result<IpAddr, DnsError> {
        let resolver = self.resolver.as_ref().ok_or(DnsError::NoResolver)?;
        let lookup = tokio::time::timeout(self.timeout, resolver.lookup_ip(name))
            .await
            .map_err(|_| DnsError::Timeout)?
            .map_err(DnsError::Lookup)?;
        lookup.iter().next().ok_or(DnsError::NoAddress)
    }
}

//! Asynchronous name resolution for desktop targets that are DNS names (pyos with
//! `useinternalfqdn`), with hickory-resolver and its TTL-respecting cache.
//!
//! Names are resolved as absolute names (a trailing dot is added), like nginx's `resolver`,
//! which ignores search domains. A name that does not resolve in time gives the request a
//! fast 502. The resolver reads the system configuration (`/etc/resolv.conf`) when the
//! gateway starts but resolves nothing until a request needs it. Named services (pyos,
//! website, …) are not resolved here: they go through the system resolver at request time,
//! where search domains apply (as nginx did for its static upstream names).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
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

/// The resolver of desktop names.
#[derive(Debug)]
pub struct Dns {
    resolver: Option<TokioResolver>,
    timeout: Duration,
}

impl Dns {
    /// A resolver asking `servers` (UDP, then TCP) when given, else the system's.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Self {
        if servers.is_empty() {
            return Self::from_system(timeout);
        }
        let group: Vec<NameServerConfig> = servers
            .iter()
            .flat_map(|addr| {
                [
                    NameServerConfig::new(*addr, Protocol::Udp),
                    NameServerConfig::new(*addr, Protocol::Tcp),
                ]
            })
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], group);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        builder.options_mut().cache_size = CACHE_SIZE;
        Dns {
            resolver: Some(builder.build()),
            timeout,
        }
    }

    /// A resolver from the system configuration; without one, every lookup fails (and a
    /// warning says so once, here).
    pub fn from_system(timeout: Duration) -> Self {
        let resolver = match TokioResolver::builder_tokio() {
            Ok(mut builder) => {
                builder.options_mut().cache_size = CACHE_SIZE;
                Some(builder.build())
            }
            Err(e) => {
                warn!(error = %e, "no system DNS configuration; desktop names will not resolve");
                None
            }
        };
        Dns { resolver, timeout }
    }

    /// The first address of `name` (absolute), within the timeout.
    pub async fn resolve(&self, name: &str) -> Result<IpAddr, DnsError> {
        let resolver = self.resolver.as_ref().ok_or(DnsError::NoResolver)?;
        let absolute = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        let lookup = tokio::time::timeout(self.timeout, resolver.lookup_ip(absolute))
            .await
            .map_err(|_| DnsError::Timeout)?
            .map_err(DnsError::Lookup)?;
        lookup.iter().next().ok_or(DnsError::NoAddress)
    }
}

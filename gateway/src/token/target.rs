//! The desktop address a `hash` claim decrypts to, and the rule it must pass before the
//! gateway dials it: an IP literal, or a DNS name under an allowed suffix. Decryption alone
//! proves nothing (PKCS#1 v1.5 implicit rejection turns bad padding into random bytes), so
//! this check is what stands between a decrypted value and a socket.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::Refusal;

/// The longest DNS name (RFC 1035 §2.3.4, without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;
/// The default DNS suffix pod names must end with (`<pod>.desktop.<ns>.svc.cluster.local`).
pub const DEFAULT_DNS_SUFFIX: &str = ".svc.cluster.local";

/// A validated desktop address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An IP literal (pyos's default: the pod IP).
    Ip(IpAddr),
    /// A lower-cased DNS name (pyos with `useinternalfqdn`).
    Name(Arc<str>),
}

impl Target {
    /// `host:port` for a URI authority, with IPv6 literals bracketed.
    pub fn authority(&self, port: u16) -> String {
        match self {
            Target::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
            Target::Ip(ip) => format!("{ip}:{port}"),
            Target::Name(name) => format!("{name}:{port}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Ip(ip) => ip.fmt(f),
            Target::Name(name) => f.write_str(name),
        }
    }
}

/// What a decrypted address may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    /// DNS suffixes a name must end with, each starting with a dot; empty = no names at all.
    pub dns_suffixes: Vec<String>,
    /// Accept loopback addresses (127.0.0.0/8, ::1). Off in production; the demo and the
    /// tests run their fake desktops on loopback.
    pub allow_loopback: bool,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        TargetPolicy {
            dns_suffixes: vec![DEFAULT_DNS_SUFFIX.to_owned()],
            allow_loopback: false,
        }
    }
}

fn is_link_local_v6(ip: &Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

fn v4_refused(ip: &Ipv4Addr, allow_loopback: bool) -> bool {
    ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        // 169.254.0.0/16 holds cloud metadata services; no pod lives there.
        || ip.is_link_local()
        || (ip.is_loopback() && !allow_loopback)
}

fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

impl TargetPolicy {
    /// Accepts `bytes` as a [`Target`] or refuses it with [`Refusal::InvalidTarget`].
    pub fn validate(&self, bytes: &[u8]) -> Result<Target, Refusal> {
        if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || !bytes.iter().all(u8::is_ascii_graphic)
        {
            return Err(Refusal::InvalidTarget);
        }
        // All graphic ASCII, hence UTF-8.
        let text = std::str::from_utf8(bytes).map_err(|_| Refusal::InvalidTarget)?;
        if let Ok(ip) = text.parse::<IpAddr>() {
            return self.validate_ip(ip.to_canonical());
        }
        self.validate_name(text)
    }

    fn validate_ip(&self, ip: IpAddr) -> Result<Target, Refusal> {
        let refused = match &ip {
            IpAddr::V4(v4) => v4_refused(v4, self.allow_loopback),
            IpAddr::V6(v6) => {
                v6.is_unspecified()
                    || v6.is_multicast()
                    || is_link_local_v6(v6)
                    || (v6.is_loopback() && !self.allow_loopback)
            }
        };
        if refused {
            Err(Refusal::InvalidTarget)
        } else {
            Ok(Target::Ip(ip))
        }
    }

    fn validate_name(&self, text: &str) -> Result<Target, Refusal> {
        let lower = text.to_ascii_lowercase();
        let under_suffix = self.dns_suffixes.iter().any(|suffix| {
            // A suffix always matches whole labels, whether or not it was written with a dot.
            let suffix = suffix.trim_start_matches('.').to_ascii_lowercase();
            lower
                .strip_suffix(&suffix)
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|head| !head.is_empty())
        });
        if !under_suffix || !lower.split('.').all(valid_label) {
            return Err(Refusal::InvalidTarget);
        }
        // A name whose last label is numeric would read as a mangled IPv4 address.
        if lower
            .rsplit('.')
            .next()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(Refusal::InvalidTarget);
        }
        Ok(Target::Name(lower.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn accepts_pod_ips_and_pod_fqdns() {
        let p = policy();
        assert_eq!(
            p.validate(b"10.244.1.23"),
            Ok(Target::Ip("10.244.1.23".parse().unwrap()))
        );
        assert_eq!(
            p.validate(b"fd00::1:23"),
            Ok(Target::Ip("fd00::1:23".parse().unwrap()))
        );
        assert_eq!(
            p.validate(b"Fry-3A9c1.desktop.abcdesktop.svc.cluster.local"),
            Ok(Target::Name(
                "fry-3a9c1.desktop.abcdesktop.svc.cluster.local".into()
            ))
        );
        // An IPv4-mapped IPv6 address is the IPv4 address it maps.
        assert_eq!(
            p.validate(b"::ffff:10.0.0.1"),
            Ok(Target::Ip("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn refuses_what_no_pod_can_be() {
        let p = policy();
        for bad in [
            &b""[..],
            b"0.0.0.0",
            b"::",
            b"255.255.255.255",
            b"224.0.0.1",
            b"ff02::1",
            b"169.254.169.254",
            b"fe80::1",
            b"127.0.0.1",
            b"::1",
            b"::ffff:127.0.0.1",
            b"010.1.1.1",
            b"10.1.1",
            b"[fd00::1]",
            b"10.0.0.1:80",
            b"10.0.0.1 ",
            b"evil.example.com",
            b"svc.cluster.local",
            b".svc.cluster.local",
            b"a..b.svc.cluster.local",
            b"-a.svc.cluster.local",
            b"a_b.svc.cluster.local",
            b"pod.svc.cluster.local.",
            b"10.0.0.1.svc.cluster.local.1",
            b"h\xc3\xa9.svc.cluster.local",
            b"a\0.svc.cluster.local",
        ] {
            assert_eq!(
                p.validate(bad),
                Err(Refusal::InvalidTarget),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("{}.svc.cluster.local", vec!["a".repeat(60); 4].join("."));
        assert!(long.len() > MAX_NAME_LEN);
        assert_eq!(p.validate(long.as_bytes()), Err(Refusal::InvalidTarget));
        let label64 = format!("{}.svc.cluster.local", "a".repeat(64));
        assert_eq!(p.validate(label64.as_bytes()), Err(Refusal::InvalidTarget));
    }

    #[test]
    fn loopback_only_when_allowed() {
        let p = TargetPolicy {
            allow_loopback: true,
            ..policy()
        };
        assert!(p.validate(b"127.0.0.1").is_ok());
        assert!(p.validate(b"::1").is_ok());
        assert!(p.validate(b"0.0.0.0").is_err());
    }

    #[test]
    fn suffixes_are_configurable_and_empty_means_ip_only() {
        let p = TargetPolicy {
            dns_suffixes: vec![".desktop.abcdesktop.svc.example.org".into()],
            allow_loopback: false,
        };
        assert!(
            p.validate(b"pod.desktop.abcdesktop.svc.example.org")
                .is_ok()
        );
        assert!(
            p.validate(b"pod.desktop.abcdesktop.svc.cluster.local")
                .is_err()
        );
        let ip_only = TargetPolicy {
            dns_suffixes: vec![],
            allow_loopback: false,
        };
        assert!(ip_only.validate(b"pod.svc.cluster.local").is_err());
        assert!(ip_only.validate(b"10.0.0.1").is_ok());
        let undotted = TargetPolicy {
            dns_suffixes: vec!["cluster.local".into()],
            allow_loopback: false,
        };
        assert!(undotted.validate(b"pod.svc.cluster.local").is_ok());
        assert!(undotted.validate(b"evilcluster.local").is_err());
    }

    #[test]
    fn authority_brackets_ipv6() {
        let v6 = Target::Ip("fd00::1".parse().unwrap());
        assert_eq!(v6.authority(6081), "[fd00::1]:6081");
        let v4 = Target::Ip("10.0.0.1".parse().unwrap());
        assert_eq!(v4.authority(6081), "10.0.0.1:6081");
        assert_eq!(
            Target::Name("a.svc.cluster.local".into()).authority(1),
            "a.svc.cluster.local:1"
        );
    }
}

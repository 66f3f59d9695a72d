//! Why the gateway would refuse a desktop address, in words an operator can act on.
//!
//! The verdict is always the gateway's own: [`TargetPolicy::validate`]. This module only
//! describes a refused value (its kind, the rule it broke) and names the `keys-tool` flag that
//! would allow it, after checking with `validate` again that the flag really would.

use std::net::{IpAddr, SocketAddr};

use gateway::token::TargetPolicy;

/// Longest shown prefix of a refused value.
const SHOWN: usize = 80;

/// A refused value, how it reads, what rule it breaks, and the flag that allows it (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetProblem {
    /// The value, quoted and escaped (at most 80 characters of it).
    pub value: String,
    /// What the value is: "IPv4 address", "DNS name", "empty", …
    pub kind: &'static str,
    /// The rule it breaks.
    pub rule: String,
    /// The `keys-tool` flag that would let it through, when one would.
    pub allowed_by: Option<String>,
}

impl std::fmt::Display for TargetProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.value, self.kind, self.rule)?;
        if let Some(flag) = &self.allowed_by {
            write!(f, "; {flag} allows it")?;
        }
        Ok(())
    }
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let cut: String = text.chars().take(SHOWN).collect();
    let more = if text.chars().count() > SHOWN {
        "…"
    } else {
        ""
    };
    format!("{cut:?}{more}")
}

fn ip_rule(ip: IpAddr) -> &'static str {
    let ip = ip.to_canonical();
    match ip {
        _ if ip.is_unspecified() => "the unspecified address is no pod's",
        _ if ip.is_loopback() => {
            "loopback is refused unless allowed (only demos and tests run desktops there)"
        }
        _ if ip.is_multicast() => "a multicast address is no pod's",
        IpAddr::V4(v4) if v4.is_broadcast() => "the broadcast address is no pod's",
        IpAddr::V4(v4) if v4.is_link_local() => {
            "link-local (169.254.0.0/16, where cloud metadata services live) is no pod's"
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            "link-local (fe80::/10) is no pod's"
        }
        _ => "refused by the gateway's address rules",
    }
}

/// Why `policy` refuses `bytes`, or `None` when it accepts them.
pub fn explain(policy: &TargetPolicy, bytes: &[u8]) -> Option<TargetProblem> {
    policy.validate(bytes).err()?;
    let value = shown(bytes);
    let problem = |kind, rule: &str, allowed_by: Option<String>| TargetProblem {
        value: value.clone(),
        kind,
        rule: rule.to_owned(),
        allowed_by,
    };
    let passes = |p: &TargetPolicy| p.validate(bytes).is_ok();
    if bytes.is_empty() {
        return Some(problem("empty", "a desktop address cannot be empty", None));
    }
    let Some(text) = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.bytes().all(|b| b.is_ascii_graphic()))
    else {
        return Some(problem(
            "not printable ASCII",
            "an address is printable ASCII without spaces (random bytes are what a wrong key or padding decrypts to)",
            None,
        ));
    };
    if let Ok(ip) = text.parse::<IpAddr>() {
        let kind = if ip.to_canonical().is_ipv4() {
            "IPv4 address"
        } else {
            "IPv6 address"
        };
        let loopback = TargetPolicy {
            allow_loopback: true,
            ..policy.clone()
        };
        let flag = (!policy.allow_loopback && passes(&loopback)).then(|| "--allow-loopback".into());
        return Some(problem(kind, ip_rule(ip), flag));
    }
    if text.parse::<SocketAddr>().is_ok() {
        return Some(problem(
            "address with a port",
            "the target is the pod's address alone; the gateway adds each route's port",
            None,
        ));
    }
    // A name: would it pass under a suffix made of everything after its first label?
    let parent = text.split_once('.').map(|(_, parent)| parent);
    let widened = parent.map(|parent| TargetPolicy {
        dns_suffixes: vec![format!(".{parent}")],
        ..policy.clone()
    });
    if let (Some(parent), Some(widened)) = (parent, widened)
        && passes(&widened)
    {
        let suffixes = if policy.dns_suffixes.is_empty() {
            "no DNS suffix is allowed (addresses only)".to_owned()
        } else {
            format!(
                "not under an allowed suffix ({})",
                policy.dns_suffixes.join(", ")
            )
        };
        return Some(problem(
            "DNS name",
            &suffixes,
            Some(format!("--dns-suffix .{}", parent.to_ascii_lowercase())),
        ));
    }
    if parent.is_none() {
        return Some(problem(
            "DNS name",
            "a single-label name is under no allowed suffix",
            None,
        ));
    }
    Some(problem(
        "DNS name",
        "not a valid DNS name (labels of letters, digits and '-', at most 63 bytes each and 253 in all, the last one not numeric)",
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_values_have_no_problem() {
        let policy = TargetPolicy::default();
        assert_eq!(explain(&policy, b"10.244.1.23"), None);
        assert_eq!(
            explain(&policy, b"pod.desktop.abcdesktop.svc.cluster.local"),
            None
        );
    }

    #[test]
    fn a_suggested_flag_really_lets_the_value_through() {
        let policy = TargetPolicy::default();
        let loopback = explain(&policy, b"127.0.0.1").unwrap();
        assert_eq!(loopback.allowed_by.as_deref(), Some("--allow-loopback"));
        let name = explain(&policy, b"pod.Example.org").unwrap();
        assert_eq!(
            name.allowed_by.as_deref(),
            Some("--dns-suffix .example.org")
        );
        let widened = TargetPolicy {
            dns_suffixes: vec![".example.org".into()],
            ..policy
        };
        assert!(widened.validate(b"pod.Example.org").is_ok());
    }
}

//! What the gateway writes about requests, without ever writing a token: URI redaction for the
//! access log, a rate limiter for repeated authentication-failure lines, and log output set-up.
//!
//! Tokens travel in query strings and in `/container/<jwt>/` path segments; the access log
//! therefore never prints a raw query value or that segment, only a short fingerprint of the
//! token (the first 8 hex digits of its SHA-256), which is enough to correlate lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global `tracing` subscriber. `filter` is an `EnvFilter` directive string
/// (e.g. `info,gateway=debug`); an invalid one falls back to `info`.
pub fn init(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or a container log gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second initialisation (tests, demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The request path and query as the access log may show them: every query value and any
/// `/container/<segment>/` replaced by [`REDACTED`]; a query item without `=` (the raw-token
/// form `?<jwt>`) is redacted whole. Parameter names are kept.
pub fn redact_uri(path: &str, query: Option<&str>) -> String {
    let mut out = redact_path(path);
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        out.push('?');
        for (i, item) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match item.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                None if item.is_empty() => {}
                None => out.push_str(REDACTED),
            }
        }
    }
    out
}

/// The path with the segment after every `/container/` redacted (the original's container
/// rules match anywhere in the path, so a token segment may appear anywhere). Routes match on
/// the normalized path, so `/%63ontainer/<jwt>/…` or `//container//<jwt>` reach the container
/// routes too: a path whose normalized form holds `/container/` and differs from it is shown
/// normalized (and redacted), never as written.
/// A path nginx would refuse (400) is shown as written only without escapes.
pub fn redact_path(path: &str) -> String {
    match crate::routes::RequestPath::parse(path) {
        Ok(normalized) if normalized.as_str() != path && normalized.contains("/container/") => {
            redact_container_segments(normalized.as_str())
        }
        Err(_) if path.contains('%') => REDACTED.to_owned(),
        _ => redact_container_segments(path),
    }
}

fn redact_container_segments(path: &str) -> String {
    const MARK: &str = "/container/";
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at + MARK.len()]);
        rest = &rest[at + MARK.len()..];
        let end = rest.find('/').unwrap_or(rest.len());
        // `/container/<port>` (all digits, the header-token form) holds no token.
        if rest[..end].bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&rest[..end]);
        } else {
            out.push_str(REDACTED);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Lets at most `per_second` lines through per wall-clock second and counts the rest, so a
/// flood of forged tokens costs a bounded amount of log (the original wrote every one, token
/// included). Lock-free: two atomics.
#[derive(Debug)]
pub struct LogLimiter {
    per_second: u64,
    /// `second << 32 | count` for the current second.
    window: AtomicU64,
    suppressed: AtomicU64,
}

/// The answer of [`LogLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPermit {
    /// Write the line.
    Write,
    /// Write the line, and say that `n` lines were suppressed since the last written one.
    WriteAfterSuppressing(u64),
    /// Drop the line (it is counted).
    Suppress,
}

impl LogLimiter {
    /// A limiter letting `per_second` lines through each second.
    pub fn new(per_second: u32) -> Self {
        LogLimiter {
            per_second: u64::from(per_second),
            window: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Asks to write one line now.
    pub fn check(&self) -> LogPermit {
        let second = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(second)
    }

    /// Asks to write one line at wall-clock `second`.
    pub fn check_at(&self, second: u64) -> LogPermit {
        let second = second & 0xffff_ffff;
        let packed = self
            .window
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(if w >> 32 == second {
                    w.saturating_add(1)
                } else {
                    (second << 32) | 1
                })
            })
            .unwrap_or_else(|w| w);
        let count = if packed >> 32 == second {
            (packed & 0xffff_ffff) + 1
        } else {
            1
        };
        if count > self.per_second {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return LogPermit::Suppress;
        }
        match self.suppressed.swap(0, Ordering::Relaxed) {
            0 => LogPermit::Write,
            n => LogPermit::WriteAfterSuppressing(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_raw_query_tokens_are_redacted() {
        assert_eq!(
            redact_uri("/websockify", Some("jwt_token=a.b.c")),
            "/websockify?jwt_token=[redacted]"
        );
        assert_eq!(
            redact_uri("/terminals/12", Some("eyJ.eyJ.sig")),
            "/terminals/12?[redacted]"
        );
        assert_eq!(
            redact_uri("/filer", Some("file=/home/x&jwt_token=t&&flag")),
            "/filer?file=[redacted]&jwt_token=[redacted]&&[redacted]"
        );
        assert_eq!(redact_uri("/spawner/getenv", None), "/spawner/getenv");
        assert_eq!(redact_uri("/spawner/getenv", Some("")), "/spawner/getenv");
    }

    #[test]
    fn container_tokens_spelled_otherwise_are_redacted_too() {
        // Each of these reaches a container route once normalized.
        assert_eq!(
            redact_path("/%63ontainer/eyJ.a.b/6081/x"),
            "/container/[redacted]/6081/x"
        );
        assert_eq!(
            redact_path("//container//eyJ.a.b/6081"),
            "/container/[redacted]/6081"
        );
        assert_eq!(
            redact_path("/x/../container/eyJ%2Ea.b/6081/y"),
            "/container/[redacted]/6081/y"
        );
        // Refused paths with escapes are not shown at all; others as written.
        assert_eq!(redact_path("/%63ontainer/eyJ.a.b/%zz"), REDACTED);
        assert_eq!(redact_path("/../x"), "/../x");
        assert_eq!(redact_path("/%73pawner/x"), "/%73pawner/x");
    }

    #[test]
    fn container_token_segments_are_redacted_wherever_they_appear() {
        assert_eq!(
            redact_path("/container/eyJ.a.b/6081/x"),
            "/container/[redacted]/6081/x"
        );
        assert_eq!(redact_path("/container/eyJ.a.b"), "/container/[redacted]");
        assert_eq!(
            redact_path("/filer/container/eyJ.a.b/1/y"),
            "/filer/container/[redacted]/1/y"
        );
        assert_eq!(redact_path("/container/29781"), "/container/29781");
        assert_eq!(redact_path("/container/"), "/container/");
        assert_eq!(redact_path("/healthz"), "/healthz");
    }

    #[test]
    fn limiter_lets_a_bounded_number_through_per_second() {
        let limiter = LogLimiter::new(3);
        let permits: Vec<_> = (0..10).map(|_| limiter.check_at(100)).collect();
        assert_eq!(
            permits
                .iter()
                .filter(|p| **p != LogPermit::Suppress)
                .count(),
            3
        );
        // Next second: the first line reports how many were dropped.
        assert_eq!(limiter.check_at(101), LogPermit::WriteAfterSuppressing(7));
        assert_eq!(limiter.check_at(101), LogPermit::Write);
    }
}

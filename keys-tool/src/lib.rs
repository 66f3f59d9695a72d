//! keys-tool's library: the gateway's verdict on a token ([`inspect`]), why a desktop address
//! is refused ([`target`]) and small helpers. Key generation and minting live in the
//! gateway-tooling crate (`gateway_tooling::keygen`, `gateway_tooling::mint`), which
//! `gateway demo` shares; the binary is a thin clap front end over both.

pub mod inspect;
pub mod target;

/// Reads a whole file, naming it in the error.
pub fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context as _;
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

//! Shared helpers for the token-pipeline tests: key sets (`gateway_tooling::fixtures::KeyDir`,
//! made by the gateway's key generator or by `openssl` exactly as abcdesktop's installation
//! document does), and pyos-made tokens from `tests/interop/pyos.py` (PyJWT 2.4.0 +
//! pycryptodome).
#![allow(dead_code)]

use std::process::Command;

use gateway::token::{AuthConfig, TargetPolicy};

pub use gateway_tooling::fixtures::{
    KeyDir, PAYLOAD_PRIVATE, PAYLOAD_PUBLIC, SIGNING_PRIVATE, SIGNING_PUBLIC, now, openssl,
};

/// Runs tests/interop/pyos.py with `args`; returns its trimmed stdout.
pub fn pyos(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/pyos.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "pyos.py {:?} failed (PyJWT 2.4.0 and pycryptodome come from scripts/install-test-deps.sh): {}",
        args.first(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A pyos-made token for `target` with this directory's keys.
pub fn pyos_mint(keys: &KeyDir, target: &str, mode: &str) -> String {
    let signing = keys.path(SIGNING_PRIVATE);
    let payload = keys.path(PAYLOAD_PUBLIC);
    pyos(&[
        "mint",
        signing.to_str().unwrap(),
        payload.to_str().unwrap(),
        target,
        "420",
        mode,
    ])
}

/// Settings for tests: the default pipeline, but loopback targets allowed.
pub fn test_config() -> AuthConfig {
    AuthConfig {
        target: TargetPolicy {
            allow_loopback: true,
            ..TargetPolicy::default()
        },
        ..AuthConfig::default()
    }
}

//! Shared helpers for the token-pipeline tests: key sets made by the code under test
//! (`gateway_tooling::keygen`) or by `openssl` exactly as abcdesktop's installation document does, and
//! pyos-made tokens from `tests/interop/pyos.py` (PyJWT 2.4.0 + pycryptodome).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use gateway::token::{AuthConfig, Keys, PayloadKey, PayloadPadding, SigningKey, TargetPolicy};
use gateway_tooling::keygen;
use gateway_tooling::mint::{MintMode, Minter};

pub const PAYLOAD_PRIVATE: &str = "abcdesktop_jwt_desktop_payload_private_key.pem";
pub const PAYLOAD_PUBLIC: &str = "abcdesktop_jwt_desktop_payload_public_key.pem";
pub const SIGNING_PRIVATE: &str = "abcdesktop_jwt_desktop_signing_private_key.pem";
pub const SIGNING_PUBLIC: &str = "abcdesktop_jwt_desktop_signing_public_key.pem";

/// A directory holding the desktop payload and signing key pairs.
pub struct KeyDir {
    pub dir: tempfile::TempDir,
}

impl KeyDir {
    /// The three pairs written by the gateway's own key generator (what `keys-tool gen` does).
    pub fn keygen(bits: usize) -> KeyDir {
        let dir = tempfile::tempdir().unwrap();
        let pairs = keygen::generate_all(bits).unwrap();
        keygen::write_pairs(dir.path(), &pairs, false).unwrap();
        KeyDir { dir }
    }

    /// The desktop pairs made by the installation document's openssl commands (OpenSSL 3
    /// writes PKCS#8 private keys; `traditional` asks for PKCS#1 like OpenSSL 1.x did).
    pub fn openssl(bits: usize, traditional: bool) -> KeyDir {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (private, public) in [
            (PAYLOAD_PRIVATE, None),
            (SIGNING_PRIVATE, Some(SIGNING_PUBLIC)),
        ] {
            let mut genrsa = vec!["genrsa"];
            if traditional {
                genrsa.push("-traditional");
            }
            openssl(
                d,
                &[genrsa, vec!["-out", private, &bits.to_string()]].concat(),
            );
            if let Some(public) = public {
                openssl(
                    d,
                    &[
                        "rsa", "-in", private, "-outform", "PEM", "-pubout", "-out", public,
                    ],
                );
            }
        }
        let spki = format!("_{PAYLOAD_PUBLIC}");
        openssl(
            d,
            &[
                "rsa",
                "-in",
                PAYLOAD_PRIVATE,
                "-outform",
                "PEM",
                "-pubout",
                "-out",
                &spki,
            ],
        );
        openssl(
            d,
            &[
                "rsa",
                "-pubin",
                "-in",
                &spki,
                "-RSAPublicKey_out",
                "-out",
                PAYLOAD_PUBLIC,
            ],
        );
        KeyDir { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// The keys a gateway using this directory holds (payload private key).
    pub fn gateway_keys(&self, padding: PayloadPadding) -> Keys {
        Keys {
            signing: vec![SigningKey::from_pem(&self.read(SIGNING_PUBLIC)).unwrap()],
            payload: Some(PayloadKey::from_pem(&self.read(PAYLOAD_PRIVATE), padding).unwrap()),
        }
    }

    /// A minter signing with this directory's keys.
    pub fn minter(&self, mode: MintMode) -> Minter {
        let payload = match mode {
            MintMode::Rsapublickey => PAYLOAD_PRIVATE,
            _ => PAYLOAD_PUBLIC,
        };
        Minter::from_pem(&self.read(SIGNING_PRIVATE), &self.read(payload), mode).unwrap()
    }
}

pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl must be installed (scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

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

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

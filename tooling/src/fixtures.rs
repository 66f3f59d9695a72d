//! Key fixtures for tests, benchmarks and the demo: a throw-away directory of abcdesktop key
//! pairs, made by the gateway's own generator (what `keys-tool gen` writes) or by the
//! installation document's `openssl` commands, and a minter signing with them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use anyhow::Context as _;
use gateway::config::{AuthSection, FileConfig, KeysSection, UpstreamConfig};
use gateway::token::{Keys, PayloadKey, PayloadPadding, SigningKey};

use crate::keygen::{self, PAIRS, PairSpec};
use crate::mint::{MintMode, Minter};

/// The desktop payload private key's file name.
pub const PAYLOAD_PRIVATE: &str = PAIRS[0].private_file;
/// The desktop payload public key's file name (`RSA PUBLIC KEY` PEM).
pub const PAYLOAD_PUBLIC: &str = PAIRS[0].public_file;
/// The desktop signing private key's file name.
pub const SIGNING_PRIVATE: &str = PAIRS[1].private_file;
/// The desktop signing public key's file name (`PUBLIC KEY` PEM).
pub const SIGNING_PUBLIC: &str = PAIRS[1].public_file;

/// Seconds since the Unix epoch, as token times are written.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// A temporary directory holding abcdesktop key pairs under their usual file names; removed
/// when dropped.
#[derive(Debug)]
pub struct KeyDir {
    /// The directory.
    pub dir: tempfile::TempDir,
}

impl KeyDir {
    /// The pairs `specs` of `bits` bits, written by the gateway's key generator.
    pub fn generate(specs: &[PairSpec], bits: usize) -> anyhow::Result<KeyDir> {
        let dir = tempfile::tempdir().context("cannot create a temporary key directory")?;
        let pairs = specs
            .iter()
            .map(|spec| keygen::generate_pair(*spec, bits))
            .collect::<anyhow::Result<Vec<_>>>()?;
        keygen::write_pairs(dir.path(), &pairs, false)?;
        Ok(KeyDir { dir })
    }

    /// The three pairs, as `keys-tool gen` writes them (panics on failure: for tests).
    pub fn keygen(bits: usize) -> KeyDir {
        KeyDir::generate(&PAIRS, bits).expect("key generation")
    }

    /// The desktop pairs made by the installation document's openssl commands (OpenSSL 3
    /// writes PKCS#8 private keys; `traditional` asks for PKCS#1 like OpenSSL 1.x did). Panics
    /// when `openssl` fails: for tests.
    pub fn openssl(bits: usize, traditional: bool) -> KeyDir {
        let dir = tempfile::tempdir().expect("temporary key directory");
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

    /// The path of the file `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The desktop signing public key's path (what the gateway verifies with).
    pub fn signing_public(&self) -> PathBuf {
        self.path(SIGNING_PUBLIC)
    }

    /// The desktop payload private key's path (what the gateway decrypts with).
    pub fn payload_private(&self) -> PathBuf {
        self.path(PAYLOAD_PRIVATE)
    }

    /// The text of the file `name`.
    pub fn try_read(&self, name: &str) -> anyhow::Result<String> {
        let path = self.path(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// [`KeyDir::try_read`], panicking: for tests.
    pub fn read(&self, name: &str) -> String {
        self.try_read(name).expect("key file")
    }

    /// A gateway configuration for a fake desktop on loopback: this directory's keys,
    /// loopback targets allowed, and `port_map` sending each pod port to the ephemeral port
    /// of the service standing in for it. Everything else is the default.
    pub fn file_config(&self, port_map: BTreeMap<u16, u16>) -> FileConfig {
        FileConfig {
            keys: KeysSection {
                signing_public_key: self.signing_public(),
                payload_private_key: self.payload_private(),
                ..KeysSection::default()
            },
            auth: AuthSection {
                allow_loopback: true,
                ..AuthSection::default()
            },
            upstream: UpstreamConfig {
                port_map,
                ..UpstreamConfig::default()
            },
            ..FileConfig::default()
        }
    }

    /// The keys a gateway using this directory holds (payload private key).
    pub fn gateway_keys(&self, padding: PayloadPadding) -> Keys {
        Keys {
            signing: vec![SigningKey::from_pem(&self.read(SIGNING_PUBLIC)).expect("signing key")],
            payload: Some(
                PayloadKey::from_pem(&self.read(PAYLOAD_PRIVATE), padding).expect("payload key"),
            ),
        }
    }

    /// A minter signing with this directory's keys and encrypting as `mode` says, as pyos
    /// would with these files.
    pub fn try_minter(&self, mode: MintMode) -> anyhow::Result<Minter> {
        let payload = match mode {
            MintMode::Rsapublickey => PAYLOAD_PRIVATE,
            _ => PAYLOAD_PUBLIC,
        };
        Minter::from_pem(
            &self.try_read(SIGNING_PRIVATE)?,
            &self.try_read(payload)?,
            mode,
        )
    }

    /// [`KeyDir::try_minter`], panicking: for tests.
    pub fn minter(&self, mode: MintMode) -> Minter {
        self.try_minter(mode).expect("minter")
    }
}

/// Runs `openssl args` in `dir`; returns its stdout. Panics when it fails (for tests).
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

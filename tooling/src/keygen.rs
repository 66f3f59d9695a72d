//! abcdesktop's three RSA key pairs (`keys-tool gen`, `gateway demo`), with the exact file names, PEM formats
//! and Kubernetes Secrets pyos and the gateway mount.
//!
//! | pair | private file (PKCS#1 PEM) | public file | Secret |
//! |---|---|---|---|
//! | desktop payload | `abcdesktop_jwt_desktop_payload_private_key.pem` | `…payload_public_key.pem`, **RSAPublicKey** PEM (pyos reads it) | `abcdesktopjwtdesktoppayload` |
//! | desktop signing | `abcdesktop_jwt_desktop_signing_private_key.pem` | `…signing_public_key.pem`, SPKI PEM | `abcdesktopjwtdesktopsigning` |
//! | user signing | `abcdesktop_jwt_user_signing_private_key.pem` | `…user_signing_public_key.pem`, SPKI PEM | `abcdesktopjwtusersigning` |

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _, LineEnding};
use rsa::pkcs8::EncodePublicKey as _;

/// Key sizes `gen` offers.
pub const BITS_CHOICES: [usize; 4] = [1024, 2048, 3072, 4096];
/// Default key size: what abcdesktop 4.4's installer uses.
pub const DEFAULT_BITS: usize = 2048;
/// Default namespace of the Secrets.
pub const DEFAULT_NAMESPACE: &str = "abcdesktop";

/// How a pair's public key is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicFormat {
    /// `BEGIN RSA PUBLIC KEY` (what `openssl rsa -RSAPublicKey_out` writes).
    Pkcs1,
    /// `BEGIN PUBLIC KEY` (what `openssl rsa -pubout` writes).
    Spki,
}

/// One of abcdesktop's key pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairSpec {
    /// What the pair is for.
    pub purpose: &'static str,
    /// Private key file name.
    pub private_file: &'static str,
    /// Public key file name.
    pub public_file: &'static str,
    /// Public key PEM format.
    pub public_format: PublicFormat,
    /// Name of the Kubernetes Secret holding both files.
    pub secret_name: &'static str,
    /// Value of the Secret's `abcdesktop/role` label.
    pub role: &'static str,
}

/// The three pairs, in the order abcdesktop's installer makes them.
pub const PAIRS: [PairSpec; 3] = [
    PairSpec {
        purpose: "desktop payload (pyos encrypts the pod address, the gateway decrypts it)",
        private_file: "abcdesktop_jwt_desktop_payload_private_key.pem",
        public_file: "abcdesktop_jwt_desktop_payload_public_key.pem",
        public_format: PublicFormat::Pkcs1,
        secret_name: "abcdesktopjwtdesktoppayload",
        role: "desktop.payloadkeys",
    },
    PairSpec {
        purpose: "desktop signing (pyos signs desktop tokens, the gateway verifies them)",
        private_file: "abcdesktop_jwt_desktop_signing_private_key.pem",
        public_file: "abcdesktop_jwt_desktop_signing_public_key.pem",
        public_format: PublicFormat::Spki,
        secret_name: "abcdesktopjwtdesktopsigning",
        role: "desktop.signingkeys",
    },
    PairSpec {
        purpose: "user signing (pyos signs and checks user tokens)",
        private_file: "abcdesktop_jwt_user_signing_private_key.pem",
        public_file: "abcdesktop_jwt_user_signing_public_key.pem",
        public_format: PublicFormat::Spki,
        secret_name: "abcdesktopjwtusersigning",
        role: "user.signingkeys",
    },
];

/// A generated pair, as PEM text.
pub struct GeneratedPair {
    /// Which pair this is.
    pub spec: PairSpec,
    /// The private key, PKCS#1 PEM (zeroed on drop).
    pub private_pem: rsa::pkcs1::der::zeroize::Zeroizing<String>,
    /// The public key, in the pair's format.
    pub public_pem: String,
}

impl std::fmt::Debug for GeneratedPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedPair")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// Makes a fresh RSA key pair of `bits` bits (public exponent 65537) and encodes it as `spec`
/// says.
pub fn generate_pair(spec: PairSpec, bits: usize) -> anyhow::Result<GeneratedPair> {
    if !BITS_CHOICES.contains(&bits) {
        bail!("--bits must be one of 1024, 2048, 3072, 4096 (got {bits})");
    }
    let mut rng = rsa::rand_core::UnwrapErr(getrandom::SysRng);
    let key = rsa::PrivateKey::new(&mut rng, bits).context("RSA key generation failed")?;
    let private_pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .context("cannot encode the private key")?;
    let public = key.to_public_key();
    let public_pem = match spec.public_format {
        PublicFormat::Pkcs1 => public
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(anyhow::Error::from),
        PublicFormat::Spki => public
            .to_public_key_pem(LineEnding::LF)
            .map_err(anyhow::Error::from),
    }
    .context("cannot encode the public key")?;
    Ok(GeneratedPair {
        spec,
        private_pem,
        public_pem,
    })
}

/// Makes all three pairs.
pub fn generate_all(bits: usize) -> anyhow::Result<Vec<GeneratedPair>> {
    PAIRS
        .iter()
        .map(|spec| generate_pair(*spec, bits))
        .collect()
}

fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // `mode` only applies to new files; an overwritten key keeps no looser mode.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes every pair into `dir` (created if needed): private keys 0600, public keys 0644.
/// Without `force`, refuses before writing anything if any of the files exists.
pub fn write_pairs(
    dir: &Path,
    pairs: &[GeneratedPair],
    force: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if !force {
        for pair in pairs {
            for name in [pair.spec.private_file, pair.spec.public_file] {
                let path = dir.join(name);
                if path.exists() {
                    bail!(
                        "{} exists; refusing to overwrite keys (use --force)",
                        path.display()
                    );
                }
            }
        }
    }
    let mut written = Vec::new();
    for pair in pairs {
        let private = dir.join(pair.spec.private_file);
        write_file(&private, &pair.private_pem, 0o600, force)?;
        let public = dir.join(pair.spec.public_file);
        write_file(&public, &pair.public_pem, 0o644, force)?;
        written.extend([private, public]);
    }
    Ok(written)
}

/// The three Secrets as one multi-document YAML stream, ready for `kubectl apply -f -`.
pub fn secrets_yaml(pairs: &[GeneratedPair], namespace: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for pair in pairs {
        let spec = &pair.spec;
        // `write!` to a String cannot fail.
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    abcdesktop/role: {role}\ntype: Opaque\ndata:\n  {private_file}: {private}\n  {public_file}: {public}\n",
            name = spec.secret_name,
            role = spec.role,
            private_file = spec.private_file,
            private = b64.encode(pair.private_pem.as_bytes()),
            public_file = spec.public_file,
            public = b64.encode(pair.public_pem.as_bytes()),
        );
    }
    out
}

/// File name `gen --kubernetes` writes the Secrets to, beside the keys.
pub const SECRETS_FILE: &str = "abcdesktop-jwt-secrets.yaml";

//! Desktop tokens (`keys-tool mint`, `gateway demo`, the load harness) shaped exactly like pyos's (`oc/auth/jwtdesktop.py`).
//!
//! - header `{"typ":"JWT","alg":"RS256"}` (PyJWT 2.4.0's order);
//! - claims `{"key":0,"nfb":<now>,"hash":<b64>,"exp":<now+lifetime>}` in that order, compact
//!   JSON (`nfb` is pyos's typo for `nbf`, kept because pyos sends it);
//! - `hash` = standard base64, with padding, of the desktop address encrypted as `MintMode`
//!   says; segments base64url without padding; RSASSA-PKCS1-v1_5 SHA-256 signature.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use rsa::sha2::{Sha256, Sha512};
use serde::Serialize;

/// pyos's reference `jwt_token_desktop.exp` (seconds a desktop token lives).
pub const DEFAULT_LIFETIME_SECS: i64 = 420;

/// How `hash` is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "kebab-case")]
pub enum MintMode {
    /// RSAES-PKCS1-v1_5 with the payload public key: what pyos does.
    Pkcs1,
    /// Block-type-1 padding with the payload private key: what abcdesktop's install document
    /// describes (the gateway then holds the `RSA PUBLIC KEY`).
    Rsapublickey,
    /// RSAES-OAEP SHA-1 with the payload public key.
    OaepSha1,
    /// RSAES-OAEP SHA-256 with the payload public key (pyos `rsaencryptionprotocol: PKCS1_OAEP`).
    OaepSha256,
    /// RSAES-OAEP SHA-512 with the payload public key (the gateway's `payload_padding = oaep-sha512`).
    OaepSha512,
}

/// The payload key as `mint` needs it for a mode.
enum PayloadEncryptor {
    Public(rsa::PublicKey),
    Private(Box<rsa::PrivateKey>),
}

/// Signs and encrypts desktop tokens with fixed keys.
pub struct Minter {
    signing: rsa::PrivateKey,
    payload: PayloadEncryptor,
    mode: MintMode,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

// The one PEM reader is the gateway's: a key the gateway reads, the tooling reads alike.
pub use gateway::{private_key_from_pem, public_key_from_pem};

#[derive(Serialize)]
struct Header {
    typ: &'static str,
    alg: &'static str,
}

#[derive(Serialize)]
struct PyosClaims<'a> {
    key: u8,
    nfb: i64,
    hash: &'a str,
    exp: i64,
}

impl Minter {
    /// A minter signing with `signing_pem` (the desktop signing private key) and encrypting
    /// with `payload_pem`: the payload public key for `pkcs1`/`oaep-*` (a private key file is
    /// accepted too, its public half is used), the payload private key for `rsapublickey`.
    pub fn from_pem(signing_pem: &str, payload_pem: &str, mode: MintMode) -> anyhow::Result<Self> {
        let signing = private_key_from_pem(signing_pem).context("signing key")?;
        let payload = match mode {
            MintMode::Rsapublickey => PayloadEncryptor::Private(Box::new(
                private_key_from_pem(payload_pem)
                    .context("payload key (mode rsapublickey needs the payload PRIVATE key)")?,
            )),
            _ => PayloadEncryptor::Public(public_key_from_pem(payload_pem).context("payload key")?),
        };
        Ok(Minter {
            signing,
            payload,
            mode,
        })
    }

    /// Encrypts `target` as the mode says and returns standard base64 with padding.
    pub fn encrypt_hash(&self, target: &str) -> anyhow::Result<String> {
        if !target.is_ascii() {
            bail!("the target must be ASCII (pyos encodes it as ASCII)");
        }
        let data = target.as_bytes();
        let ciphertext = match (&self.payload, self.mode) {
            (PayloadEncryptor::Private(key), _) => key
                .sign(rsa::Pkcs1v15Sign::new_unprefixed(), data)
                .context("target too long for the payload key")?,
            (PayloadEncryptor::Public(key), MintMode::OaepSha1) => key
                .oaep_encrypt::<sha1::Sha1>(data)
                .context("target too long for the payload key")?,
            (PayloadEncryptor::Public(key), MintMode::OaepSha256) => key
                .oaep_encrypt::<Sha256>(data)
                .context("target too long for the payload key")?,
            (PayloadEncryptor::Public(key), MintMode::OaepSha512) => key
                .oaep_encrypt::<Sha512>(data)
                .context("target too long for the payload key")?,
            (PayloadEncryptor::Public(key), _) => key
                .pkcs1v15_encrypt(data)
                .context("target too long for the payload key")?,
        };
        Ok(base64::engine::general_purpose::STANDARD.encode(ciphertext))
    }

    /// A token for `target`, issued at `now`, living `lifetime` seconds.
    pub fn mint(&self, target: &str, now: i64, lifetime: i64) -> anyhow::Result<String> {
        let hash = self.encrypt_hash(target)?;
        let claims = PyosClaims {
            key: 0,
            nfb: now,
            hash: &hash,
            exp: now.saturating_add(lifetime),
        };
        self.sign_claims(&serde_json::to_vec(&claims)?)
    }

    /// Signs arbitrary claims JSON with the PyJWT 2.4.0 header (for tests of odd claims).
    pub fn sign_claims(&self, claims_json: &[u8]) -> anyhow::Result<String> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::to_vec(&Header {
            typ: "JWT",
            alg: "RS256",
        })?;
        let signing_input = format!("{}.{}", b64.encode(header), b64.encode(claims_json));
        let signature = self
            .signing
            .pkcs1v15_sign::<Sha256>(signing_input.as_bytes())
            .context("signing failed")?;
        Ok(format!("{signing_input}.{}", b64.encode(signature)))
    }
}

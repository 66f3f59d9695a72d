//! Decrypting the `hash` claim: the desktop pod's address, RSA-encrypted by pyos.
//!
//! The mode follows from the key file the gateway is given:
//! - a private key (`RSA PRIVATE KEY` or `PRIVATE KEY`): RSAES-PKCS1-v1_5 decryption, what
//!   pyos really does (it encrypts with the payload public key), or RSAES-OAEP when configured
//!   for pyos's `rsaencryptionprotocol: PKCS1_OAEP`;
//! - a public key (`RSA PUBLIC KEY`, as abcdesktop's installation document tells operators to
//!   hand the gateway, or `PUBLIC KEY`): recovery of a PKCS#1 v1.5 block-type-1 "encryption"
//!   made with the private key, the scheme that document describes.
//!
//! Callers decrypt only what a verified signature covers (see [`super::Authenticator`]).

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;

use super::Refusal;
use super::rsa_ffi::{LcRsa, OaepDigest};
use crate::keys::{self, KeyError};

/// Standard base64 (`+/`), padding optional, as pyos writes it and nginx decoded it.
const B64STD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The padding pyos used, as configured (`payload_padding` in the gateway config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadPadding {
    /// RSAES-PKCS1-v1_5 (pyos's default `PKCS1_v1_5`).
    #[default]
    Pkcs1,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1.
    OaepSha1,
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (pyos `rsahashprotocol: SHA256`).
    OaepSha256,
    /// RSAES-OAEP with SHA-512 and MGF1-SHA-512.
    OaepSha512,
}

impl PayloadPadding {
    fn oaep(self) -> Option<OaepDigest> {
        match self {
            PayloadPadding::Pkcs1 => None,
            PayloadPadding::OaepSha1 => Some(OaepDigest::Sha1),
            PayloadPadding::OaepSha256 => Some(OaepDigest::Sha256),
            PayloadPadding::OaepSha512 => Some(OaepDigest::Sha512),
        }
    }
}

/// How a [`PayloadKey`] undoes the encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadMode {
    /// Private key, RSAES-PKCS1-v1_5 (block type 2).
    PrivatePkcs1,
    /// Private key, RSAES-OAEP with the given padding.
    PrivateOaep(PayloadPadding),
    /// Public key, recovery of a block-type-1 encryption made with the private key.
    PublicRecover,
}

impl PayloadMode {
    /// A short name for logs and `keys-tool inspect`.
    pub fn name(self) -> &'static str {
        match self {
            PayloadMode::PrivatePkcs1 => "pkcs1 (private key)",
            PayloadMode::PrivateOaep(PayloadPadding::OaepSha1) => "oaep-sha1 (private key)",
            PayloadMode::PrivateOaep(PayloadPadding::OaepSha512) => "oaep-sha512 (private key)",
            PayloadMode::PrivateOaep(_) => "oaep-sha256 (private key)",
            PayloadMode::PublicRecover => "rsapublickey (public key, block type 1)",
        }
    }
}

/// The key that decrypts `hash` claims. Clones share the key held by AWS-LC.
#[derive(Clone)]
pub struct PayloadKey {
    rsa: Arc<LcRsa>,
    mode: PayloadMode,
    bits: usize,
    /// SHA-256 of the key's PKCS#1 DER: tells two loads of one key apart from a new key.
    id: [u8; 32],
}

impl std::fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadKey")
            .field("mode", &self.mode)
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

impl PayloadKey {
    /// Reads the payload key from PEM; the PEM label picks the mode (see the module docs).
    /// `padding` applies to private keys; a public key with an OAEP padding is refused.
    pub fn from_pem(text: &str, padding: PayloadPadding) -> Result<Self, KeyError> {
        let label = keys::pem_label(text).ok_or(KeyError::NotPem)?;
        if label.contains("PRIVATE KEY") {
            let private = keys::read_private(text)?;
            let rsa = LcRsa::private_from_pkcs1_der(private.pkcs1_der.as_bytes())
                .ok_or(KeyError::Backend)?;
            let mode = match padding {
                PayloadPadding::Pkcs1 => PayloadMode::PrivatePkcs1,
                oaep => PayloadMode::PrivateOaep(oaep),
            };
            Ok(PayloadKey {
                rsa: Arc::new(rsa),
                mode,
                bits: private.bits,
                id: super::digest(private.pkcs1_der.as_bytes()),
            })
        } else {
            if padding != PayloadPadding::Pkcs1 {
                return Err(KeyError::OaepNeedsPrivateKey);
            }
            let public = keys::read_public(text)?;
            let rsa = LcRsa::public_from_pkcs1_der(&public.pkcs1_der).ok_or(KeyError::Backend)?;
            Ok(PayloadKey {
                rsa: Arc::new(rsa),
                mode: PayloadMode::PublicRecover,
                bits: public.bits,
                id: super::digest(&public.pkcs1_der),
            })
        }
    }

    /// The decryption mode this key was loaded for.
    pub fn mode(&self) -> PayloadMode {
        self.mode
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Whether `other` is the same key used the same way (e.g. the same file read twice).
    pub fn same_key(&self, other: &PayloadKey) -> bool {
        self.id == other.id && self.mode == other.mode
    }

    /// One throw-away decryption: AWS-LC builds a key's Montgomery and blinding state on its
    /// first use, which takes a noticeable time on a cold process (0.1–0.7 s measured) and
    /// blocks the worker thread doing it; paying that here, when the key is loaded, keeps it
    /// off the first request. The input is below any modulus (leading zero byte), so the RSA
    /// operation runs in full; its padding check then fails, as intended.
    pub fn warm_up(&self) {
        let mut input = vec![0x5a_u8; self.rsa.size()];
        if let Some(first) = input.first_mut() {
            *first = 0;
        }
        let _ = match self.mode {
            PayloadMode::PrivatePkcs1 => self.rsa.private_decrypt(None, &input),
            PayloadMode::PrivateOaep(padding) => self.rsa.private_decrypt(padding.oaep(), &input),
            PayloadMode::PublicRecover => self.rsa.public_recover(&input),
        };
    }

    /// base64-decodes and decrypts a `hash` claim. The plaintext is *not* yet trusted: with
    /// some libraries bad padding decrypts to random bytes, so it must go through
    /// [`super::TargetPolicy::validate`] before use.
    pub fn decrypt(&self, hash: &str) -> Result<Vec<u8>, Refusal> {
        let ciphertext = B64STD.decode(hash).map_err(|_| Refusal::HashNotBase64)?;
        if ciphertext.len() != self.rsa.size() {
            return Err(Refusal::Undecryptable);
        }
        let plaintext = match self.mode {
            PayloadMode::PrivatePkcs1 => self.rsa.private_decrypt(None, &ciphertext),
            PayloadMode::PrivateOaep(padding) => {
                self.rsa.private_decrypt(padding.oaep(), &ciphertext)
            }
            PayloadMode::PublicRecover => self.rsa.public_recover(&ciphertext),
        };
        plaintext.ok_or(Refusal::Undecryptable)
    }
}

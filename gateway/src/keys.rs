//! Reading the two kinds of key file the gateway is given: the desktop *signing* public key
//! (verifies the token's RS256 signature) and the desktop *payload* key (decrypts the `hash`
//! claim). Both are PEM files as abcdesktop's installation commands, its key generator image
//! and `keys-tool gen` write them. Errors name the file's kind of content, never its bytes.

use rsa::pkcs1::{
    DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPrivateKey, EncodeRsaPublicKey,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;

/// Smallest RSA modulus accepted, in bits (abcdesktop's documented `openssl genrsa … 1024`).
pub const MIN_KEY_BITS: usize = 1024;
/// Largest RSA modulus accepted, in bits: beyond this a decryption costs several ms.
pub const MAX_KEY_BITS: usize = 4096;
/// Keys below this size load with a warning: 1024-bit RSA is considered legacy.
pub const WARN_BELOW_BITS: usize = 2048;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No `-----BEGIN …-----` line at all.
    #[error("not a PEM file (no BEGIN line)")]
    NotPem,
    /// A PEM label this kind of key cannot be (e.g. a certificate, an EC key).
    #[error("PEM label `{0}` is not accepted here (expected {1})")]
    UnexpectedLabel(String, &'static str),
    /// The PEM body did not decode to an RSA key of the announced kind.
    #[error("PEM `{label}` does not hold a valid RSA key")]
    Parse {
        /// The PEM label that was read.
        label: String,
        /// The parser's error (it never contains key bytes).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The modulus is outside [`MIN_KEY_BITS`]..=[`MAX_KEY_BITS`].
    #[error("RSA key of {0} bits is outside the accepted {MIN_KEY_BITS}..={MAX_KEY_BITS} bits")]
    Size(usize),
    /// OAEP needs the private key; a public key can only undo a block-type-1 encryption.
    #[error("OAEP payload decryption needs the payload private key, not a public key")]
    OaepNeedsPrivateKey,
    /// AWS-LC refused a key the `rsa` crate accepted (should not happen).
    #[error("the crypto library refused the key")]
    Backend,
}

/// The label of the first PEM block in `text` (`RSA PRIVATE KEY`, `PUBLIC KEY`, …).
pub fn pem_label(text: &str) -> Option<&str> {
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &text[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

/// SHA-256 of a key or certificate file's bytes: whether the file changed on disk since it was
/// last loaded (the key reloader, TLS certificate reload). Not a token digest: the two never
/// meet, so they are different types.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileDigest([u8; 32]);

impl FileDigest {
    /// The digest of `bytes`.
    pub(crate) fn of(bytes: &[u8]) -> FileDigest {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        FileDigest(out)
    }
}

impl std::fmt::Debug for FileDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The first 4 bytes, as a fingerprint: a file's digest, not its content.
        f.write_str("FileDigest(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// An RSA public key read from `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM.
#[derive(Debug)]
pub(crate) struct PublicPem {
    pub(crate) pkcs1_der: Vec<u8>,
    pub(crate) bits: usize,
}

/// An RSA private key read from `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8) PEM.
pub(crate) struct PrivatePem {
    pub(crate) pkcs1_der: rsa::pkcs1::der::SecretDocument,
    pub(crate) bits: usize,
}

impl std::fmt::Debug for PrivatePem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivatePem")
            .field("bits", &self.bits)
            .finish_non_exhaustive()
    }
}

fn parse_err<E: std::error::Error + Send + Sync + 'static>(
    label: &str,
) -> impl FnOnce(E) -> KeyError {
    let label = label.to_owned();
    move |e| KeyError::Parse {
        label,
        source: Box::new(e),
    }
}

fn check_bits(bits: usize) -> Result<usize, KeyError> {
    // Keys below `WARN_BELOW_BITS` are accepted; the key reloader warns about them, with the
    // file's path, once per key it loads.
    if (MIN_KEY_BITS..=MAX_KEY_BITS).contains(&bits) {
        Ok(bits)
    } else {
        Err(KeyError::Size(bits))
    }
}

/// Parses an RSA public key from `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM, of any
/// size. Returns the label read as well.
fn parse_public(text: &str) -> Result<(rsa::PublicKey, &str), KeyError> {
    let label = pem_label(text).ok_or(KeyError::NotPem)?;
    let key = match label {
        "PUBLIC KEY" => rsa::PublicKey::from_public_key_pem(text).map_err(parse_err(label))?,
        "RSA PUBLIC KEY" => rsa::PublicKey::from_pkcs1_pem(text).map_err(parse_err(label))?,
        other => {
            return Err(KeyError::UnexpectedLabel(
                other.to_owned(),
                "PUBLIC KEY or RSA PUBLIC KEY",
            ));
        }
    };
    Ok((key, label))
}

/// Parses an RSA private key from `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8) PEM, of
/// any size: the one private-key PEM reader (the gateway's payload key, and the tooling's
/// signing and payload keys).
pub fn private_key_from_pem(text: &str) -> Result<rsa::PrivateKey, KeyError> {
    let label = pem_label(text).ok_or(KeyError::NotPem)?;
    match label {
        "RSA PRIVATE KEY" => rsa::PrivateKey::from_pkcs1_pem(text).map_err(parse_err(label)),
        "PRIVATE KEY" => rsa::PrivateKey::from_pkcs8_pem(text).map_err(parse_err(label)),
        other => Err(KeyError::UnexpectedLabel(
            other.to_owned(),
            "RSA PRIVATE KEY or PRIVATE KEY",
        )),
    }
}

/// An RSA public key from a file holding either half of the pair, of any size: a public key
/// PEM as the gateway reads it, else the public half of a private key PEM (a payload
/// private key's fingerprint, a token minted with the payload private key file).
pub fn public_key_from_pem(text: &str) -> Result<rsa::PublicKey, KeyError> {
    match parse_public(text) {
        Err(KeyError::UnexpectedLabel(..)) => Ok(private_key_from_pem(text)?.to_public_key()),
        other => other.map(|(key, _)| key),
    }
}

/// Reads an RSA public key in either PEM form.
pub(crate) fn read_public(text: &str) -> Result<PublicPem, KeyError> {
    let (key, label) = parse_public(text)?;
    let bits = check_bits(key.size() * 8)?;
    let der = key.to_pkcs1_der().map_err(parse_err(label))?;
    Ok(PublicPem {
        pkcs1_der: der.as_bytes().to_vec(),
        bits,
    })
}

/// Reads an RSA private key in either PEM form.
pub(crate) fn read_private(text: &str) -> Result<PrivatePem, KeyError> {
    let key = private_key_from_pem(text)?;
    let bits = check_bits(key.size() * 8)?;
    let der = key
        .to_pkcs1_der()
        .map_err(parse_err(pem_label(text).unwrap_or_default()))?;
    Ok(PrivatePem {
        pkcs1_der: der,
        bits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_label_reads_the_first_begin_line() {
        assert_eq!(
            pem_label("-----BEGIN RSA PUBLIC KEY-----\nAAA\n"),
            Some("RSA PUBLIC KEY")
        );
        assert_eq!(
            pem_label("junk\n-----BEGIN PUBLIC KEY-----\n"),
            Some("PUBLIC KEY")
        );
        assert_eq!(pem_label("no pem here"), None);
        assert_eq!(pem_label("-----BEGIN unterminated"), None);
    }

    #[test]
    fn other_labels_are_refused_by_name() {
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        assert!(
            matches!(read_public(cert), Err(KeyError::UnexpectedLabel(l, _)) if l == "CERTIFICATE")
        );
        assert!(
            matches!(read_private(cert), Err(KeyError::UnexpectedLabel(l, _)) if l == "CERTIFICATE")
        );
        assert!(matches!(read_public("hello"), Err(KeyError::NotPem)));
    }

    #[test]
    fn garbage_body_is_a_parse_error_without_key_bytes() {
        let bad = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
        let err = read_public(bad).unwrap_err();
        assert!(matches!(err, KeyError::Parse { .. }));
        assert!(!err.to_string().contains("AAAA"));
    }
}

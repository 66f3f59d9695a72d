//! What every property shares: the committed throw-away keys (`fuzz/keys/`), the fixed clock,
//! and [`Input`], which turns fuzz bytes into structured choices without any extra crate (the
//! same code also compiles inside the gateway's test crate, which has no `arbitrary`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use gateway::token::{Keys, PayloadKey, PayloadPadding, SigningKey};
use gateway_tooling::mint::{MintMode, Minter};

/// The fixed "now" of every target (2027-01-15): seed tokens expire in 2100 or later, so they
/// stay valid, and a run never depends on the wall clock.
pub const NOW: i64 = 1_800_000_000;

/// Throw-away fuzzing keys (see `fuzz/keys/README.md`); the seed tokens are signed with them.
pub const SIGNING_PRIVATE_PEM: &str =
    include_str!("../keys/abcdesktop_jwt_desktop_signing_private_key.pem");
/// See [`SIGNING_PRIVATE_PEM`].
pub const SIGNING_PUBLIC_PEM: &str =
    include_str!("../keys/abcdesktop_jwt_desktop_signing_public_key.pem");
/// See [`SIGNING_PRIVATE_PEM`].
pub const PAYLOAD_PRIVATE_PEM: &str =
    include_str!("../keys/abcdesktop_jwt_desktop_payload_private_key.pem");
/// See [`SIGNING_PRIVATE_PEM`].
pub const PAYLOAD_PUBLIC_PEM: &str =
    include_str!("../keys/abcdesktop_jwt_desktop_payload_public_key.pem");

/// base64url without padding (JWS segments).
pub const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
/// Standard base64 with padding (`hash`).
pub const B64STD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The signing public key, parsed once.
pub fn signing_keys() -> &'static [SigningKey] {
    static KEYS: OnceLock<Vec<SigningKey>> = OnceLock::new();
    KEYS.get_or_init(|| vec![SigningKey::from_pem(SIGNING_PUBLIC_PEM).expect("fuzz signing key")])
}

/// A fresh key set (signing key + PKCS#1 v1.5 payload key), for pipelines that own their keys.
pub fn new_keys() -> Keys {
    Keys {
        signing: vec![SigningKey::from_pem(SIGNING_PUBLIC_PEM).expect("fuzz signing key")],
        payload: Some(
            PayloadKey::from_pem(PAYLOAD_PRIVATE_PEM, PayloadPadding::Pkcs1)
                .expect("fuzz payload key"),
        ),
    }
}

/// [`new_keys`], made once.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(new_keys)
}

/// The payload-key modes the gateway supports, each with the key that decrypts it and the
/// mint mode that encrypts for it.
pub fn payload_keys() -> &'static [(PayloadKey, MintMode)] {
    static KEYS: OnceLock<Vec<(PayloadKey, MintMode)>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let private = |padding| PayloadKey::from_pem(PAYLOAD_PRIVATE_PEM, padding);
        vec![
            (
                private(PayloadPadding::Pkcs1).expect("pkcs1 key"),
                MintMode::Pkcs1,
            ),
            (
                private(PayloadPadding::OaepSha1).expect("oaep-sha1 key"),
                MintMode::OaepSha1,
            ),
            (
                private(PayloadPadding::OaepSha256).expect("oaep-sha256 key"),
                MintMode::OaepSha256,
            ),
            (
                PayloadKey::from_pem(PAYLOAD_PUBLIC_PEM, PayloadPadding::Pkcs1)
                    .expect("public payload key"),
                MintMode::Rsapublickey,
            ),
        ]
    })
}

/// A minter for `mode` with the fixed keys.
pub fn minter(mode: MintMode) -> &'static Minter {
    static MINTERS: OnceLock<Vec<(MintMode, Minter)>> = OnceLock::new();
    let all = MINTERS.get_or_init(|| {
        [
            MintMode::Pkcs1,
            MintMode::OaepSha1,
            MintMode::OaepSha256,
            MintMode::Rsapublickey,
        ]
        .into_iter()
        .map(|mode| {
            let payload = match mode {
                MintMode::Rsapublickey => PAYLOAD_PRIVATE_PEM,
                _ => PAYLOAD_PUBLIC_PEM,
            };
            let minter = Minter::from_pem(SIGNING_PRIVATE_PEM, payload, mode).expect("minter");
            (mode, minter)
        })
        .collect()
    });
    all.iter()
        .find(|(m, _)| *m == mode)
        .map(|(_, minter)| minter)
        .expect("every mode has a minter")
}

/// The signing private key, for signing arbitrary bytes (headers the minter would never write).
pub fn signer() -> &'static rsa::PrivateKey {
    static KEY: OnceLock<rsa::PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| {
        gateway_tooling::mint::private_key_from_pem(SIGNING_PRIVATE_PEM).expect("fuzz signing key")
    })
}

/// Entries kept per memo table below.
const MEMO_ENTRIES: usize = 4096;

thread_local! {
    /// Signatures already made, by message: an RSA private-key operation costs milliseconds
    /// under the sanitizer, and consecutive inputs often share the bytes that get signed.
    static SIGNATURES: RefCell<HashMap<Vec<u8>, Vec<u8>>> = RefCell::new(HashMap::new());
    /// Tokens already minted by `Minter::sign_claims`, by claims.
    static MINTED: RefCell<HashMap<Vec<u8>, String>> = RefCell::new(HashMap::new());
}

/// RSASSA-PKCS1-v1_5 SHA-256 signature of `message` with the fixed signing key. Deterministic:
/// one message has exactly one signature, which is what `jws_verify` relies on.
pub fn sign(message: &[u8]) -> Vec<u8> {
    SIGNATURES.with_borrow_mut(|memo| {
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.entry(message.to_vec())
            .or_insert_with(|| {
                signer()
                    .pkcs1v15_sign::<rsa::sha2::Sha256>(message)
                    .expect("signing with the fuzz key")
            })
            .clone()
    })
}

/// `gateway_tooling::mint::Minter::sign_claims` with the fixed keys: a token with PyJWT's header and
/// `claims` as its payload.
pub fn mint_claims(claims: &[u8]) -> String {
    MINTED.with_borrow_mut(|memo| {
        if memo.len() >= MEMO_ENTRIES {
            memo.clear();
        }
        memo.entry(claims.to_vec())
            .or_insert_with(|| {
                minter(MintMode::Pkcs1)
                    .sign_claims(claims)
                    .expect("minting from chosen claims")
            })
            .clone()
    })
}

/// `header.claims.signature` for raw header and claims bytes, signed with the fixed key.
pub fn compact(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
    let signature = B64URL.encode(sign(signing_input.as_bytes()));
    format!("{signing_input}.{signature}")
}

/// Whether `inner` is a slice of `outer` (same memory, not merely equal text): how the
/// extraction properties prove that nothing was copied or invented.
pub fn is_within(inner: &str, outer: &[u8]) -> bool {
    let start = outer.as_ptr() as usize;
    let at = inner.as_ptr() as usize;
    at >= start && at + inner.len() <= start + outer.len()
}

/// Fuzz bytes read front to back as structured choices. Past the end every read gives zeros
/// or empty slices, so any input is a complete choice.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads from `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// One byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((first, rest)) => {
                self.data = rest;
                *first
            }
            None => 0,
        }
    }

    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// Eight bytes, little-endian.
    pub fn i64(&mut self) -> i64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        i64::from_le_bytes(bytes)
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length byte, then that many bytes.
    pub fn chunk(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.bytes(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// The fuzz keys as files, for code that loads keys from paths (`Config::load`).
#[derive(Debug)]
pub struct KeyFiles {
    dir: tempfile::TempDir,
}

impl KeyFiles {
    /// The directory holding them (it exists for the life of the process).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
    /// The signing public key.
    pub fn signing(&self) -> std::path::PathBuf {
        self.dir().join("signing_public.pem")
    }
    /// The payload private key.
    pub fn payload(&self) -> std::path::PathBuf {
        self.dir().join("payload_private.pem")
    }
    /// A path in the directory where no file exists.
    pub fn absent(&self) -> std::path::PathBuf {
        self.dir().join("absent.pem")
    }
}

/// [`KeyFiles`], written once per process.
pub fn key_files() -> &'static KeyFiles {
    static FILES: OnceLock<KeyFiles> = OnceLock::new();
    FILES.get_or_init(|| {
        let files = KeyFiles {
            dir: tempfile::tempdir().expect("temporary directory"),
        };
        std::fs::write(files.signing(), SIGNING_PUBLIC_PEM).expect("writing the signing key");
        std::fs::write(files.payload(), PAYLOAD_PRIVATE_PEM).expect("writing the payload key");
        files
    })
}

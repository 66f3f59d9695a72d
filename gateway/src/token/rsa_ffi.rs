//! The one place the gateway calls AWS-LC's C API directly: RSA decryption of the `hash`
//! claim.
//!
//! Why not aws-lc-rs's safe API: its decrypting keys refuse moduli under 2048 bits, and
//! abcdesktop's installation document and default images use 1024-bit payload keys. The pure
//! Rust `rsa` crate handles those but is 4× slower (≈345 µs against ≈87 µs per 1024-bit
//! PKCS#1 v1.5 decryption, measured here). So key *parsing* stays with the `rsa` crate, and
//! the parsed key is handed to the same AWS-LC library aws-lc-rs links (aws-lc-sys, already
//! built as aws-lc-rs's dependency) as PKCS#1 DER, for the three operations below. Nothing
//! else may use `unsafe`.
#![allow(unsafe_code)]

use std::ptr::NonNull;

use aws_lc_sys as sys;

/// Which digest OAEP (and its MGF1) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OaepDigest {
    Sha1,
    Sha256,
    Sha512,
}

/// An RSA key held by AWS-LC. Immutable after construction; AWS-LC documents `RSA` and
/// `EVP_PKEY` objects as safe to use from several threads at once for these operations.
pub(crate) struct LcRsa {
    rsa: NonNull<sys::RSA>,
    /// Present for private keys only (OAEP and PKCS#1 v1.5 decryption go through EVP).
    pkey: Option<NonNull<sys::EVP_PKEY>>,
    size: usize,
}

// SAFETY: the pointers are owned by this value (freed once, in Drop), never mutated after
// construction, and AWS-LC's RSA/EVP_PKEY objects are thread-safe for concurrent
// decrypt/public-decrypt calls (they take their own locks for lazily built Montgomery and
// blinding state).
unsafe impl Send for LcRsa {}
// SAFETY: see `Send` above: every method takes `&self` and only reads the key.
unsafe impl Sync for LcRsa {}

impl std::fmt::Debug for LcRsa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("LcRsa")
            .field("bits", &(self.size * 8))
            .field("private", &self.pkey.is_some())
            .finish()
    }
}

/// Clears AWS-LC's thread-local error queue after a failed call, so that a later failure
/// on this thread does not report a stale reason.
fn clear_errors() {
    // SAFETY: no arguments; only touches the calling thread's error queue.
    unsafe { sys::ERR_clear_error() }
}

impl LcRsa {
    /// Loads a private key from PKCS#1 `RSAPrivateKey` DER.
    pub(crate) fn private_from_pkcs1_der(der: &[u8]) -> Option<Self> {
        // SAFETY: `der` is a valid slice for the duration of the call; AWS-LC copies what it
        // needs and returns either NULL or a new, owned RSA object.
        let rsa = NonNull::new(unsafe { sys::RSA_private_key_from_bytes(der.as_ptr(), der.len()) });
        let Some(rsa) = rsa else {
            clear_errors();
            return None;
        };
        // SAFETY: EVP_PKEY_new takes no input; NULL on allocation failure.
        let Some(pkey) = NonNull::new(unsafe { sys::EVP_PKEY_new() }) else {
            // SAFETY: `rsa` is owned here and not used again.
            unsafe { sys::RSA_free(rsa.as_ptr()) };
            return None;
        };
        // SAFETY: both pointers are valid; set1 takes its own reference to `rsa`.
        if unsafe { sys::EVP_PKEY_set1_RSA(pkey.as_ptr(), rsa.as_ptr()) } != 1 {
            // SAFETY: both are owned here and not used again.
            unsafe {
                sys::EVP_PKEY_free(pkey.as_ptr());
                sys::RSA_free(rsa.as_ptr());
            }
            clear_errors();
            return None;
        }
        Some(Self::new(rsa, Some(pkey)))
    }

    /// Loads a public key from PKCS#1 `RSAPublicKey` DER.
    pub(crate) fn public_from_pkcs1_der(der: &[u8]) -> Option<Self> {
        // SAFETY: as in `private_from_pkcs1_der`.
        let rsa = NonNull::new(unsafe { sys::RSA_public_key_from_bytes(der.as_ptr(), der.len()) });
        match rsa {
            Some(rsa) => Some(Self::new(rsa, None)),
            None => {
                clear_errors();
                None
            }
        }
    }

    fn new(rsa: NonNull<sys::RSA>, pkey: Option<NonNull<sys::EVP_PKEY>>) -> Self {
        // SAFETY: `rsa` is a valid RSA object.
        let size = unsafe { sys::RSA_size(rsa.as_ptr()) } as usize;
        LcRsa { rsa, pkey, size }
    }

    /// The modulus length in bytes (= ciphertext length).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// RSAES-PKCS1-v1_5 (padding `None`) or RSAES-OAEP decryption with the private key.
    /// `None` for a public key, a ciphertext of the wrong length, or bad padding.
    pub(crate) fn private_decrypt(
        &self,
        oaep: Option<OaepDigest>,
        input: &[u8],
    ) -> Option<Vec<u8>> {
        let pkey = self.pkey?;
        if input.len() != self.size {
            return None;
        }
        let mut out = vec![0u8; self.size];
        let mut out_len = out.len();
        // SAFETY: `pkey` is a valid private key; the context is freed on every path below.
        let ctx =
            NonNull::new(unsafe { sys::EVP_PKEY_CTX_new(pkey.as_ptr(), std::ptr::null_mut()) })?;
        // SAFETY: `ctx` is valid; the digest getters return static objects; `out` has
        // `out_len` writable bytes and `input` is a valid slice.
        let ok = unsafe {
            let ctx = ctx.as_ptr();
            let mut ok = sys::EVP_PKEY_decrypt_init(ctx) == 1;
            match oaep {
                None => {
                    ok = ok && sys::EVP_PKEY_CTX_set_rsa_padding(ctx, sys::RSA_PKCS1_PADDING) == 1
                }
                Some(digest) => {
                    let md = match digest {
                        OaepDigest::Sha1 => sys::EVP_sha1(),
                        OaepDigest::Sha256 => sys::EVP_sha256(),
                        OaepDigest::Sha512 => sys::EVP_sha512(),
                    };
                    ok = ok
                        && sys::EVP_PKEY_CTX_set_rsa_padding(ctx, sys::RSA_PKCS1_OAEP_PADDING) == 1
                        && sys::EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) == 1
                        && sys::EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1;
                }
            }
            ok = ok
                && sys::EVP_PKEY_decrypt(
                    ctx,
                    out.as_mut_ptr(),
                    &mut out_len,
                    input.as_ptr(),
                    input.len(),
                ) == 1;
            sys::EVP_PKEY_CTX_free(ctx);
            ok
        };
        if !ok || out_len > out.len() {
            clear_errors();
            return None;
        }
        out.truncate(out_len);
        Some(out)
    }

    /// Recovers the message from a PKCS#1 v1.5 block-type-1 "encryption" made with the
    /// private key (what OpenSSL calls `RSA_public_decrypt`): the mode abcdesktop's
    /// installation document describes, with the gateway holding the `RSA PUBLIC KEY`.
    pub(crate) fn public_recover(&self, input: &[u8]) -> Option<Vec<u8>> {
        if input.len() != self.size {
            return None;
        }
        let mut out = vec![0u8; self.size];
        // SAFETY: `input` has `input.len()` readable bytes, `out` has RSA_size writable bytes
        // (the documented bound for this call), and `self.rsa` is valid.
        let n = unsafe {
            sys::RSA_public_decrypt(
                input.len(),
                input.as_ptr(),
                out.as_mut_ptr(),
                self.rsa.as_ptr(),
                sys::RSA_PKCS1_PADDING,
            )
        };
        let n = usize::try_from(n).ok().filter(|n| *n <= out.len());
        let Some(n) = n else {
            clear_errors();
            return None;
        };
        out.truncate(n);
        Some(out)
    }
}

impl Drop for LcRsa {
    fn drop(&mut self) {
        // SAFETY: both objects are owned by `self` and freed exactly once, here.
        unsafe {
            if let Some(pkey) = self.pkey {
                sys::EVP_PKEY_free(pkey.as_ptr());
            }
            sys::RSA_free(self.rsa.as_ptr());
        }
    }
}

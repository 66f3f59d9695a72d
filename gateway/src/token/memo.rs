//! A connection's memory of the last token it carried, so that a browser's keep-alive
//! connection, which sends one desktop token request after request, costs a comparison per
//! request instead of a SHA-256 and a shared-cache lookup.
//!
//! What it may answer is exactly what the shared cache would: the memo holds the cache's own
//! [`Entry`] for the token, and serves it under the same rule ([`Entry::serves`]: not past its
//! validity, and its signing key still configured, so a key removed on reload revokes the memo
//! too). Only accepted tokens are remembered; a refusal always goes through the pipeline.
//!
//! Unlike the shared cache, which keys by digest, the memo holds the token itself: the one
//! token the connection's own client sent, for as long as that connection lives, next to the
//! request buffers that held it anyway. It is compared in constant time (AWS-LC's
//! `CRYPTO_memcmp`), so that where several users share a connection (behind an ingress) no
//! one's request can time its way through another's token. A token that differs replaces the
//! memo; its buffer is reused, so a connection never holds more than one token's worth
//! (bounded by the pipeline's `max_token_len`).

use std::sync::{Arc, Mutex, PoisonError};

use super::cache::{Entry, TokenDigest};
use super::{SigningKey, Target};

/// The last accepted token of one client connection (see the module docs).
#[derive(Default)]
pub struct TokenMemo {
    last: Mutex<Option<Last>>,
}

struct Last {
    token: Vec<u8>,
    digest: TokenDigest,
    entry: Arc<Entry>,
}

impl std::fmt::Debug for TokenMemo {
    // Never the token, nor its digest.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let holds = self.lock().is_some();
        f.debug_struct("TokenMemo")
            .field("holds_a_token", &holds)
            .finish()
    }
}

impl TokenMemo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Last>> {
        // Nothing panics while holding it; a poisoned memo is still a consistent one.
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The target and digest of `token` when it is the remembered one and its entry still
    /// serves at `now` under `signing`.
    pub(crate) fn recall(
        &self,
        token: &[u8],
        now: i64,
        signing: &[SigningKey],
    ) -> Option<(Target, TokenDigest)> {
        let last = self.lock();
        let last = last.as_ref()?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&last.token, token).ok()?;
        last.entry
            .serves(now, signing)
            .then(|| (last.entry.target.clone(), last.digest))
    }

    /// Remembers `token`, accepted as `entry`, in place of the previous one.
    pub(crate) fn remember(&self, token: &[u8], digest: TokenDigest, entry: Arc<Entry>) {
        let mut last = self.lock();
        match last.as_mut() {
            Some(last) => {
                last.token.clear();
                last.token.extend_from_slice(token);
                last.digest = digest;
                last.entry = entry;
            }
            None => {
                *last = Some(Last {
                    token: token.to_vec(),
                    digest,
                    entry,
                });
            }
        }
    }
}

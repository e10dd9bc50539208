//! Tokens whose signature has already been checked, so that a resource server
//! verifies each token's signature once rather than on every call.
//!
//! A client sends the same access token with every call for the token's whole
//! lifetime; an Ed25519 verification per call was a quarter of a protected
//! call's CPU. What is cached is the result of the checks that cannot change:
//! the signature, the header rules, `iss` and `aud`. Everything else is still
//! decided on every call: the time checks (`exp`, `nbf`, `iat`) here, against
//! the caller's clock, and the revocation denylist, certificate binding and
//! scope by the caller, after this returns.
//!
//! Bounds (docs/security.md, "Limits"):
//! - Only a token that passed the full check is ever stored, so random or
//!   forged tokens (the only kind an attacker without a client can make) never
//!   grow the cache nor evict from it: they take the uncached path every time.
//! - At most [`MAX_VERIFIED_TOKENS`] entries. When full, expired entries are
//!   dropped; if it is still full the new token is simply not cached (no
//!   eviction of live entries), and is verified in full on each call.
//! - Entries are keyed by the token's SHA-256, so the memory per entry is its
//!   claims, not the (up to 8 KiB) token, and a colliding token cannot be made.
//! - An entry is used only while the key that signed it is in the current key
//!   set: when the authorization server retires a key, its tokens are refused
//!   as the uncached path would refuse them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

use crate::claims::AccessTokenClaims;
use crate::verifier::{KeySet, SignedBy, TokenError, Verifier};

/// The most tokens one cache holds: about 2 MiB of claims at ~500 bytes each.
pub const MAX_VERIFIED_TOKENS: usize = 4_096;

/// A verified token: its claims and the key that signed it.
#[derive(Debug)]
struct Entry {
    claims: Arc<AccessTokenClaims>,
    signed_by: SignedBy,
}

/// The cache; one per [`Verifier`] configuration (issuer and audience), shared
/// by all calls. Cheap to clone (clones share the entries).
#[derive(Debug, Clone)]
pub struct VerifiedTokens {
    inner: Arc<Mutex<Entries>>,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Entries {
    by_digest: HashMap<[u8; 32], Entry>,
    /// Until when no entry can have expired (Unix seconds): a full cache is
    /// not scanned again before then.
    none_expired_before: i64,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::with_capacity(MAX_VERIFIED_TOKENS)
    }
}

impl VerifiedTokens {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { inner: Arc::default(), capacity }
    }

    /// How many tokens are cached now.
    pub fn len(&self) -> usize {
        self.lock().by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The map holds no invariant a panicking holder could break halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Verifier::verify`], with the signature checked once per token: the
    /// same answer for every token, keys and time, faster for a token seen
    /// before.
    pub fn verify(
        &self,
        verifier: &Verifier,
        keys: &KeySet,
        token: &str,
        now: i64,
    ) -> Result<Arc<AccessTokenClaims>, TokenError> {
        // The size cap before hashing: an oversized token costs nothing more
        // than it does uncached.
        if token.len() > verifier.config().max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = {
            let mut entries = self.lock();
            match entries.by_digest.get(&digest) {
                // Its key was retired (or its kid now names another key):
                // forget it, and let the full check decide, exactly as
                // uncached.
                Some(entry) if !entry.signed_by.still_in(keys) => {
                    entries.by_digest.remove(&digest);
                    None
                }
                Some(entry) => Some(entry.claims.clone()),
                None => None,
            }
        };
        if let Some(claims) = cached {
            verifier.check_times(&claims, now)?;
            return Ok(claims);
        }
        let audience = Some(verifier.config().audience.as_str());
        let (claims, signed_by) = verifier.verify_signed(keys, token, now, audience)?;
        let claims = Arc::new(claims);
        self.insert(digest, Entry { claims: claims.clone(), signed_by }, verifier, now);
        Ok(claims)
    }

    fn insert(&self, digest: [u8; 32], entry: Entry, verifier: &Verifier, now: i64) {
        let leeway = verifier.config().leeway_secs;
        let mut entries = self.lock();
        if entries.by_digest.len() >= self.capacity && now >= entries.none_expired_before {
            // Full: make room from the expired only. Live entries are never
            // evicted, so nobody's tokens can push another's out.
            entries.by_digest.retain(|_, entry| now < entry.claims.exp.saturating_add(leeway));
            entries.none_expired_before = entries
                .by_digest
                .values()
                .map(|entry| entry.claims.exp.saturating_add(leeway))
                .min()
                .unwrap_or(i64::MIN);
        }
        if entries.by_digest.len() < self.capacity {
            entries.by_digest.insert(digest, entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verifier::tests::{NOW, claims, ed25519, keyset, sign, verifier};

    #[test]
    fn a_cached_token_is_refused_once_expired_as_uncached() {
        let key = ed25519("k1");
        let keys = keyset(&[&key]);
        let token = sign(&key, &claims());
        let cache = VerifiedTokens::default();
        assert_eq!(*cache.verify(&verifier(), &keys, &token, NOW).unwrap(), claims());
        assert_eq!(cache.len(), 1);
        let exp = claims().exp;
        // Past exp + leeway, the cached entry answers what the full check does.
        for now in [exp + 29, exp + 30, exp + 10_000] {
            assert_eq!(
                cache.verify(&verifier(), &keys, &token, now).map(|_| ()),
                verifier().verify(&keys, &token, now).map(|_| ()),
                "at {now}"
            );
        }
        assert_eq!(cache.verify(&verifier(), &keys, &token, exp + 30), Err(TokenError::Expired));
        // And before nbf (a clock moved back).
        assert_eq!(
            cache.verify(&verifier(), &keys, &token, NOW - 100),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn a_cached_token_is_refused_once_its_key_leaves_the_key_set() {
        let (old, new) = (ed25519("k1"), ed25519("k2"));
        let token = sign(&old, &claims());
        let cache = VerifiedTokens::default();
        assert!(cache.verify(&verifier(), &keyset(&[&old, &new]), &token, NOW).is_ok());
        let rotated = keyset(&[&new]);
        assert_eq!(
            cache.verify(&verifier(), &rotated, &token, NOW),
            Err(TokenError::UnknownKey("k1".into()))
        );
        assert!(cache.is_empty(), "the retired key's entry was dropped");
        // Another key published under the same kid: the cached entry is not
        // used, and the full check refuses the signature.
        let replacement = ed25519("k1");
        assert!(cache.verify(&verifier(), &keyset(&[&old]), &token, NOW).is_ok());
        assert_eq!(
            cache.verify(&verifier(), &keyset(&[&replacement]), &token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refused_tokens_are_never_cached_so_they_cannot_grow_or_evict_it() {
        let key = ed25519("k1");
        let keys = keyset(&[&key]);
        let cache = VerifiedTokens::with_capacity(2);
        let good = sign(&key, &claims());
        assert!(cache.verify(&verifier(), &keys, &good, NOW).is_ok());
        let attacker = ed25519("k1");
        for n in 0..100 {
            let mut forged = claims();
            forged.jti = format!("forged-{n}");
            assert_eq!(
                cache.verify(&verifier(), &keys, &sign(&attacker, &forged), NOW),
                Err(TokenError::BadSignature)
            );
            assert_eq!(
                cache.verify(&verifier(), &keys, &format!("garbage.{n}.x"), NOW).map(|_| ()),
                Err(TokenError::Malformed("header encoding"))
            );
        }
        assert_eq!(cache.len(), 1);
        // A second good token fills it; a third is verified but not cached, and
        // the live entries stay.
        let mut second = claims();
        second.jti = "jti-2".into();
        let mut third = claims();
        third.jti = "jti-3".into();
        assert!(cache.verify(&verifier(), &keys, &sign(&key, &second), NOW).is_ok());
        assert!(cache.verify(&verifier(), &keys, &sign(&key, &third), NOW).is_ok());
        assert_eq!(cache.len(), 2);
        // Once those two expire, a new token takes their room.
        let mut later = claims();
        later.jti = "jti-4".into();
        later.iat = claims().exp + 100;
        later.nbf = Some(later.iat);
        later.exp = later.iat + 300;
        assert!(cache.verify(&verifier(), &keys, &sign(&key, &later), later.iat).is_ok());
        assert_eq!(cache.len(), 1);
    }
}

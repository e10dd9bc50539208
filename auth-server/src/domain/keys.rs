//! The authorization server's signing keys: generated, stored, parsed once per
//! load, published as a JWKS (RFC 7517), and rotated without a flag day.
//!
//! Rotation (RFC 7517 §5, RFC 8725 §3.1's advice to plan for key change): a new
//! key is stored with an `activate_at` in the future and published at once; it
//! signs only from `activate_at` on, by which time every resource server has
//! refetched the JWKS. The key it replaces stays published until every token it
//! signed has expired (`retire_after` past the successor's activation). Which
//! key signs is a function of the clock, so replicas sharing the database agree.

use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine as _;
use jsonwebtoken::Header;
use tollgate_token::{
    AccessTokenClaims, JWT_ACCESS_TOKEN_TYPE, Jwk, JwkSet, KeyAlgorithm, KeySet, Secret,
};

use super::model::StoredKey;
use crate::storage::{KeyStore, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("key generation failed")]
    Generation,
    #[error("stored key {0} cannot be used")]
    BadKey(String),
}

/// When keys change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// How long a new key is published before it signs: longer than resource
    /// servers take to refetch the JWKS.
    pub propagation_secs: i64,
    /// How long a replaced key stays published after its successor starts
    /// signing: at least the access-token lifetime plus verifiers' leeway.
    pub retire_after_secs: i64,
    /// The scheduled rotation period (age of the signing key); 0 turns it off.
    pub rotate_every_secs: i64,
}

/// One stored key, parsed once.
struct LoadedKey {
    kid: String,
    activate_at: i64,
    signing: SigningKey,
    jwk: Jwk,
}

/// A private key as AWS-LC holds it once parsed, with the JWS header its tokens
/// carry already encoded. `jsonwebtoken::encode` takes the key as DER and
/// parses it again for every token (for Ed25519 that derives the public key,
/// a second scalar multiplication per signature); signing here parses once
/// per load and encodes the header once per key.
struct SigningKey {
    pair: KeyPairOf,
    /// `base64url(header) + "."`: `alg`, `typ: at+jwt` (RFC 9068 §2.1), `kid`.
    header_prefix: String,
    /// The same for Txn-Tokens: `typ: txntoken+jwt`
    /// (draft-ietf-oauth-transaction-tokens §"JWT Header").
    txn_header_prefix: String,
}

enum KeyPairOf {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl SigningKey {
    fn parse(alg: KeyAlgorithm, kid: &str, pkcs8: &[u8]) -> Result<Self, KeyError> {
        let bad = |_| KeyError::BadKey(kid.to_owned());
        let pair = match alg {
            KeyAlgorithm::EdDSA => {
                KeyPairOf::Ed25519(Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8).map_err(bad)?)
            }
            KeyAlgorithm::ES256 => KeyPairOf::P256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(bad)?,
            ),
        };
        let prefix = |typ: &str| {
            let mut header = Header::new(alg.to_jsonwebtoken());
            header.typ = Some(typ.into());
            header.kid = Some(kid.to_owned());
            let json = serde_json::to_vec(&header).map_err(|_| KeyError::BadKey(kid.to_owned()))?;
            Ok::<_, KeyError>(format!(
                "{}.",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
            ))
        };
        Ok(Self {
            pair,
            header_prefix: prefix(JWT_ACCESS_TOKEN_TYPE)?,
            txn_header_prefix: prefix(tollgate_token::txn::TXN_TOKEN_JWT_TYPE)?,
        })
    }

    /// A compact JWS (RFC 7515 §7.1) of `claims` under the header `prefix`.
    fn sign<T: serde::Serialize>(
        &self,
        prefix: &str,
        claims: &T,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let b64 = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = serde_json::to_vec(claims)?;
        // Header, base64 of the payload (4/3 of it), '.', base64 of a 64-byte signature.
        let mut token = String::with_capacity(prefix.len() + payload.len() * 4 / 3 + 4 + 1 + 86);
        token.push_str(prefix);
        b64.encode_string(payload, &mut token);
        let signature = match &self.pair {
            KeyPairOf::Ed25519(pair) => pair.sign(token.as_bytes()),
            KeyPairOf::P256(pair) => pair
                .sign(&SystemRandom::new(), token.as_bytes())
                .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?,
        };
        token.push('.');
        b64.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

/// Every key of the configured algorithm, oldest activation first.
struct Ring {
    keys: Vec<LoadedKey>,
    /// For recognising our own tokens, parsed once per load: `verification[k]`
    /// is every key but the first `k`. Keys retire oldest first (each when its
    /// successor has signed for `retire_after`), so the retired keys at any
    /// moment are a prefix of `keys`, and [`KeyRing::verification_keys`] picks
    /// one of these sets without building anything on the request path.
    verification: Vec<Arc<KeySet>>,
}

/// Signs access tokens with the key that is active now and publishes the keys
/// verifiers need now. Cheap to share; reloaded from storage on demand.
pub struct KeyRing {
    alg: KeyAlgorithm,
    policy: RotationPolicy,
    ring: RwLock<Arc<Ring>>,
}

// Hand-written: the ring's parsed signing keys have no `Debug`;
// what identifies a ring is its algorithm and rotation policy.
impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("alg", &self.alg).field("policy", &self.policy).finish()
    }
}

impl KeyRing {
    /// Loads the stored keys of `alg`, generating (and storing) a first one,
    /// active at once, if there is none.
    pub async fn load_or_create(
        store: &impl KeyStore,
        alg: KeyAlgorithm,
        policy: RotationPolicy,
        now: i64,
    ) -> Result<Self, KeyError> {
        let keys = store.signing_keys().await?;
        if !keys.iter().any(|k| k.alg == alg) {
            let key = generate(alg, now, now)?;
            store.insert_signing_key(&key).await?;
            tracing::info!(kid = %key.kid, alg = alg.as_str(), "generated the first signing key");
        }
        let ring = Self { alg, policy, ring: RwLock::new(Arc::new(Ring::empty())) };
        ring.reload(store).await?;
        Ok(ring)
    }

    /// Re-reads the keys from storage (another replica or the admin command may
    /// have added one).
    pub async fn reload(&self, store: &impl KeyStore) -> Result<(), KeyError> {
        let mut keys = Vec::new();
        for key in store.signing_keys().await?.into_iter().filter(|k| k.alg == self.alg) {
            let signing = SigningKey::parse(self.alg, &key.kid, key.private_pkcs8.expose())?;
            keys.push(LoadedKey {
                kid: key.kid,
                activate_at: key.activate_at,
                signing,
                jwk: key.public_jwk,
            });
        }
        keys.sort_by(|a, b| (a.activate_at, &a.kid).cmp(&(b.activate_at, &b.kid)));
        let verification = (0..=keys.len())
            .map(|retired| {
                let jwks = JwkSet { keys: keys[retired..].iter().map(|k| k.jwk.clone()).collect() };
                Arc::new(KeySet::from_jwks(&jwks))
            })
            .collect();
        let ring = Arc::new(Ring { keys, verification });
        *self.ring.write().unwrap_or_else(std::sync::PoisonError::into_inner) = ring;
        Ok(())
    }

    fn current(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Adds a key that signs from `now + propagation` on, and loads it. Returns its kid.
    pub async fn rotate(&self, store: &impl KeyStore, now: i64) -> Result<String, KeyError> {
        let key = generate(self.alg, now, now + self.policy.propagation_secs)?;
        store.insert_signing_key(&key).await?;
        tracing::info!(kid = %key.kid, activate_at = key.activate_at, "signing key rotation started");
        self.reload(store).await?;
        Ok(key.kid)
    }

    /// Scheduled rotation: rotates when the signing key is older than the
    /// period and no successor is waiting. Returns the new kid, if any.
    pub async fn rotate_if_due(
        &self,
        store: &impl KeyStore,
        now: i64,
    ) -> Result<Option<String>, KeyError> {
        self.reload(store).await?;
        if self.policy.rotate_every_secs <= 0 {
            return Ok(None);
        }
        let ring = self.current();
        let pending = ring.keys.iter().any(|k| k.activate_at > now);
        let active_since = ring.active(now).map(|k| k.activate_at);
        match active_since {
            Some(since) if !pending && now - since >= self.policy.rotate_every_secs => {
                self.rotate(store, now).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Signs an RFC 9068 access token with the key active at `now`.
    pub fn sign(
        &self,
        claims: &AccessTokenClaims,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.with_active_key(now, |key| key.sign(&key.header_prefix, claims))
    }

    /// `sign` with the key active at `now`.
    fn with_active_key(
        &self,
        now: i64,
        sign: impl FnOnce(&SigningKey) -> Result<String, jsonwebtoken::errors::Error>,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let ring = self.current();
        let key = ring.active(now).ok_or_else(|| {
            jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)
        })?;
        sign(&key.signing)
    }

    /// Signs a Txn-Token with the same active key: the trust domain's
    /// workloads verify it with the JWKS they already hold.
    pub fn sign_txn_token(
        &self,
        claims: &tollgate_token::TxnTokenClaims,
        now: i64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.with_active_key(now, |key| key.sign(&key.txn_header_prefix, claims))
    }

    /// The keys verifiers need at `now`: the active one, any successor waiting to
    /// activate, and predecessors whose tokens may still be unexpired.
    pub fn jwks(&self, now: i64) -> JwkSet {
        let ring = self.current();
        let keys = ring
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_retired(&ring, *i, now))
            .map(|(_, k)| k.jwk.clone())
            .collect();
        JwkSet { keys }
    }

    /// Whether the `i`th key is out of its publication window at `now`:
    /// superseded when the next key activated, retired `retire_after` later.
    fn is_retired(&self, ring: &Ring, i: usize, now: i64) -> bool {
        ring.keys.get(i + 1).is_some_and(|next| {
            now >= next.activate_at.saturating_add(self.policy.retire_after_secs)
        })
    }

    /// The keys that recognise our own tokens at `now` (introspection,
    /// revocation, token exchange): exactly the published ones. A retired key
    /// is distrusted here as it is by every resource server, so a token made
    /// with it (its private half leaked from an old backup, say) cannot
    /// introspect as active or be exchanged.
    pub fn verification_keys(&self, now: i64) -> Arc<KeySet> {
        let ring = self.current();
        let retired = (0..ring.keys.len()).take_while(|i| self.is_retired(&ring, *i, now)).count();
        ring.verification[retired].clone()
    }

    /// The kid that signs at `now`.
    pub fn active_kid(&self, now: i64) -> Option<String> {
        self.current().active(now).map(|k| k.kid.clone())
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }
}

impl Ring {
    fn empty() -> Self {
        Self { keys: Vec::new(), verification: vec![Arc::new(KeySet::default())] }
    }

    /// The newest key already active at `now`.
    fn active(&self, now: i64) -> Option<&LoadedKey> {
        self.keys.iter().rev().find(|k| k.activate_at <= now)
    }
}

/// Generates a key pair that signs from `activate_at`; its `kid` is its RFC 7638
/// JWK thumbprint.
pub fn generate(alg: KeyAlgorithm, now: i64, activate_at: i64) -> Result<StoredKey, KeyError> {
    let rng = SystemRandom::new();
    let (pkcs8, public_jwk) = match alg {
        KeyAlgorithm::EdDSA => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generation)?;
            let pair =
                Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyError::Generation)?;
            (pkcs8.as_ref().to_vec(), Jwk::ed25519("", pair.public_key().as_ref()))
        }
        KeyAlgorithm::ES256 => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| KeyError::Generation)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
                .map_err(|_| KeyError::Generation)?;
            let jwk = Jwk::p256("", pair.public_key().as_ref()).ok_or(KeyError::Generation)?;
            (pkcs8.as_ref().to_vec(), jwk)
        }
    };
    let kid = public_jwk.thumbprint();
    Ok(StoredKey {
        kid: kid.clone(),
        alg,
        private_pkcs8: Secret::from(pkcs8),
        public_jwk: Jwk { kid, ..public_jwk },
        created_at: now,
        activate_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://as.example".into(),
            sub: "alice".into(),
            aud: tollgate_token::Audience::One("api".into()),
            exp: 1_000_300,
            iat: 1_000_000,
            nbf: Some(1_000_000),
            jti: "j".into(),
            client_id: "web".into(),
            scope: Some("notes:read".into()),
            act: None,
            cnf: None,
        }
    }

    /// Signs with the stored private key, verifies with the published one (a
    /// standard verifier, jsonwebtoken over ring).
    fn assert_signs_verifiably(alg: KeyAlgorithm, kid: &str, pkcs8: &[u8], public: &Jwk) {
        use tollgate_token::{Verifier, VerifierConfig};
        let signing = SigningKey::parse(alg, kid, pkcs8).unwrap();
        let token = signing.sign(&signing.header_prefix, &claims()).unwrap();
        let keys =
            KeySet::from_jwks(&JwkSet { keys: vec![Jwk { kid: kid.into(), ..public.clone() }] });
        let verifier = Verifier::new(VerifierConfig::new("https://as.example", "api"));
        assert_eq!(verifier.verify(&keys, &token, 1_000_000).unwrap(), claims(), "{alg:?}");
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(header.kid.as_deref(), Some(kid));
    }

    /// The hand-built JWS is what a standard verifier accepts, for both
    /// algorithms, with the header RFC 9068 §2.1 asks for.
    #[test]
    fn tokens_signed_with_a_parsed_key_verify_with_its_published_key() {
        for alg in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = generate(alg, 1, 1).unwrap();
            assert_signs_verifiably(alg, &key.kid, key.private_pkcs8.expose(), &key.public_jwk);
        }
    }

    /// Releases before the signing moved to AWS-LC generated and stored their
    /// keys with ring (PKCS#8 v2 for Ed25519, v1 for P-256): a database they
    /// wrote must keep signing after an upgrade, not fail to start.
    #[test]
    fn keys_stored_by_ring_based_releases_still_sign() {
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let ed = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let public = ring::signature::Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        let jwk = Jwk::ed25519("", public.public_key().as_ref());
        assert_signs_verifiably(KeyAlgorithm::EdDSA, "old-ed", ed.as_ref(), &jwk);

        let p256 = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let ec = ring::signature::EcdsaKeyPair::generate_pkcs8(p256, &rng).unwrap();
        let public = ring::signature::EcdsaKeyPair::from_pkcs8(p256, ec.as_ref(), &rng).unwrap();
        let jwk = Jwk::p256("", public.public_key().as_ref()).unwrap();
        assert_signs_verifiably(KeyAlgorithm::ES256, "old-ec", ec.as_ref(), &jwk);
    }

    #[test]
    fn generated_keys_publish_only_public_parts() {
        for alg in [KeyAlgorithm::EdDSA, KeyAlgorithm::ES256] {
            let key = generate(alg, 1, 1).unwrap();
            assert_eq!(key.public_jwk.algorithm(), Some(alg));
            assert_eq!(key.public_jwk.kid, key.kid);
            let json = serde_json::to_value(&key.public_jwk).unwrap();
            assert!(json.get("d").is_none());
        }
    }
}

//! Deciding whether to believe an access token.
//!
//! The checks run in the order RFC 8725 and RFC 9068 §4 call safe: size cap →
//! header (`typ`, `alg` on the allow-list, no `crit`) → key by `kid` from our own
//! JWKS only → the key's algorithm must equal the header's → signature → only
//! then the claims (`iss`, `aud`, `exp`, `nbf`, `iat`) with an explicit leeway.
//! Nothing in the token is trusted before its signature is, and nothing in the
//! header can point the verifier at a key of the attacker's choosing (`jku`,
//! `x5u`, `jwk` are never read).

use std::collections::HashMap;

use jsonwebtoken::DecodingKey;

use crate::claims::{AccessTokenClaims, JWT_ACCESS_TOKEN_TYPE};
use crate::error::OAuthError;
use crate::jwk::{JwkSet, KeyAlgorithm};
use crate::jws::{self, JwsError};

/// What a resource server expects of the tokens it accepts.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The authorization server's issuer identifier, compared byte for byte.
    pub issuer: String,
    /// This resource server's identifier; the token's `aud` must contain it.
    pub audience: String,
    /// Tolerated clock skew for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
    /// Tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// The algorithm allow-list (RFC 8725 §3.1).
    pub algorithms: Vec<KeyAlgorithm>,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: 30,
            max_token_bytes: 8 * 1024,
            algorithms: vec![KeyAlgorithm::EdDSA, KeyAlgorithm::ES256],
        }
    }
}

/// The verification keys currently trusted, by `kid`. Built once per JWKS fetch,
/// so no key is parsed on the request path.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (KeyAlgorithm, DecodingKey)>,
    /// Each key's SHA-256 over its algorithm and public components: tells a
    /// key apart from another published later under the same `kid`.
    fingerprints: HashMap<String, [u8; 32]>,
}

// Hand-written: `DecodingKey` has no `Debug`; a key set is told apart by its kids.
impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl KeySet {
    /// Parses every usable signing key of a JWKS. Keys of other types or uses are
    /// skipped, not fatal: a JWKS may carry keys for other consumers.
    pub fn from_jwks(set: &JwkSet) -> Self {
        let mut keys = HashMap::new();
        let mut fingerprints = HashMap::new();
        for jwk in &set.keys {
            let Some(alg) = jwk.algorithm() else { continue };
            let key = match alg {
                KeyAlgorithm::EdDSA => DecodingKey::from_ed_components(&jwk.x),
                KeyAlgorithm::ES256 => match &jwk.y {
                    Some(y) => DecodingKey::from_ec_components(&jwk.x, y),
                    None => continue,
                },
            };
            if let Ok(key) = key {
                use sha2::Digest as _;
                let mut fingerprint = sha2::Sha256::new();
                for part in [alg.as_str(), "|", &jwk.x, "|", jwk.y.as_deref().unwrap_or("")] {
                    fingerprint.update(part.as_bytes());
                }
                fingerprints.insert(jwk.kid.clone(), fingerprint.finalize().into());
                keys.insert(jwk.kid.clone(), (alg, key));
            }
        }
        Self { keys, fingerprints }
    }

    /// The fingerprint of the key with this `kid` (see [`KeySet`]).
    pub(crate) fn fingerprint(&self, kid: &str) -> Option<&[u8; 32]> {
        self.fingerprints.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<(KeyAlgorithm, &DecodingKey)> {
        self.keys.get(kid).map(|(alg, key)| (*alg, key))
    }

    /// Every key, with its `kid`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, KeyAlgorithm, &DecodingKey)> {
        self.keys.iter().map(|(kid, (alg, key))| (kid.as_str(), *alg, key))
    }
}

/// Why a token was refused. Every variant is an `invalid_token` on the wire
/// (RFC 6750 §3.1); the distinction is for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than the accepted maximum")]
    TooLarge,
    #[error("token is not a well-formed JWT ({0})")]
    Malformed(&'static str),
    #[error("token type is not at+jwt")]
    WrongType,
    #[error("signature algorithm is not allowed")]
    AlgorithmNotAllowed,
    #[error("token has a critical header parameter")]
    CriticalHeader,
    #[error("token is signed with an unknown key")]
    UnknownKey(String),
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token was issued by another issuer")]
    WrongIssuer,
    #[error("token is not meant for this resource")]
    WrongAudience,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
}

impl TokenError {
    /// A short stable label (for metrics and span attributes).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
            Self::WrongType => "wrong_type",
            Self::AlgorithmNotAllowed => "algorithm_not_allowed",
            Self::CriticalHeader => "critical_header",
            Self::UnknownKey(_) => "unknown_key",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
        }
    }
}

impl From<TokenError> for OAuthError {
    fn from(err: TokenError) -> Self {
        OAuthError::invalid_token(err.to_string())
    }
}

/// The key a token was verified with: its `kid` and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignedBy {
    pub kid: String,
    pub fingerprint: [u8; 32],
}

impl SignedBy {
    /// Whether `keys` still holds this very key under this `kid`.
    pub fn still_in(&self, keys: &KeySet) -> bool {
        keys.fingerprint(&self.kid) == Some(&self.fingerprint)
    }
}

/// Verifies access tokens against a [`KeySet`]. Cheap to share; holds no keys of
/// its own so the key set can be swapped by a background refresher.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifierConfig,
}

impl Verifier {
    pub fn new(config: VerifierConfig) -> Self {
        Self { config }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Verifies `token` at time `now` (Unix seconds) and returns its claims.
    pub fn verify(
        &self,
        keys: &KeySet,
        token: &str,
        now: i64,
    ) -> Result<AccessTokenClaims, TokenError> {
        self.verify_inner(keys, token, now, Some(&self.config.audience))
    }

    /// Like [`Verifier::verify`] but for any audience: for the issuer itself,
    /// which introspects and revokes its tokens whoever they are for
    /// (RFC 7662, RFC 7009). A resource server must use [`Verifier::verify`].
    pub fn verify_any_audience(
        &self,
        keys: &KeySet,
        token: &str,
        now: i64,
    ) -> Result<AccessTokenClaims, TokenError> {
        self.verify_inner(keys, token, now, None)
    }

    fn verify_inner(
        &self,
        keys: &KeySet,
        token: &str,
        now: i64,
        audience: Option<&str>,
    ) -> Result<AccessTokenClaims, TokenError> {
        self.verify_signed(keys, token, now, audience).map(|(claims, _)| claims)
    }

    /// The whole check; also returns the fingerprint of the key that signed the
    /// token (the verified-token cache drops an entry when that key leaves the
    /// JWKS).
    pub(crate) fn verify_signed(
        &self,
        keys: &KeySet,
        token: &str,
        now: i64,
        audience: Option<&str>,
    ) -> Result<(AccessTokenClaims, SignedBy), TokenError> {
        // 1. Size cap, before any decoding work.
        if token.len() > self.config.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        // 2. Header: typ, alg allow-list, crit, kid.
        let header = jws::header(token)?;
        let typ = header.get("typ").and_then(|v| v.as_str()).ok_or(TokenError::WrongType)?;
        // RFC 9068 §4: "at+jwt" or "application/at+jwt"; media types are
        // case-insensitive (RFC 7515 §4.1.9).
        let typ = typ.to_ascii_lowercase();
        if typ != JWT_ACCESS_TOKEN_TYPE && typ != format!("application/{JWT_ACCESS_TOKEN_TYPE}") {
            return Err(TokenError::WrongType);
        }
        let alg = header
            .get("alg")
            .and_then(|v| v.as_str())
            .and_then(KeyAlgorithm::parse)
            .filter(|alg| self.config.algorithms.contains(alg))
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        // RFC 7515 §4.1.11: a recipient that does not understand a `crit`
        // extension must reject the token; we understand none.
        if header.contains_key("crit") {
            return Err(TokenError::CriticalHeader);
        }
        let kid =
            header.get("kid").and_then(|v| v.as_str()).ok_or(TokenError::Malformed("no kid"))?;

        // 3. Key by kid, from our own JWKS only; its algorithm must be the header's.
        let (key_alg, key) =
            keys.keys.get(kid).ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))?;
        if *key_alg != alg {
            return Err(TokenError::AlgorithmMismatch);
        }

        // 4. Signature. Time-based checks are ours (step 5) so they use the clock.
        let claims: AccessTokenClaims = jws::verify(token, alg, key)?;

        // 5. Claims, now that they are known to come from the issuer's key.
        if claims.iss != self.config.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if let Some(audience) = audience
            && !claims.aud.contains(audience)
        {
            return Err(TokenError::WrongAudience);
        }
        self.check_times(&claims, now)?;
        let fingerprint = keys.fingerprint(kid).copied().unwrap_or_default();
        Ok((claims, SignedBy { kid: kid.to_owned(), fingerprint }))
    }

    /// The time-based checks (`exp`, `nbf`, `iat`, with the leeway): the part
    /// of [`Verifier::verify`] that changes as time passes, so it runs on every
    /// call, cached signature or not.
    pub(crate) fn check_times(
        &self,
        claims: &AccessTokenClaims,
        now: i64,
    ) -> Result<(), TokenError> {
        let leeway = self.config.leeway_secs;
        // RFC 7519 §4.1.4: the current time must be before `exp`.
        if now >= claims.exp.saturating_add(leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = claims.nbf
            && now.saturating_add(leeway) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        Ok(())
    }
}

impl From<JwsError> for TokenError {
    fn from(err: JwsError) -> Self {
        match err {
            JwsError::Malformed(what) => Self::Malformed(what),
            JwsError::BadSignature => Self::BadSignature,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::claims::Audience;
    use crate::jwk::Jwk;
    use base64::Engine as _;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

    pub(crate) const NOW: i64 = 1_700_000_000;
    pub(crate) const ISS: &str = "https://auth.example";
    pub(crate) const AUD: &str = "https://api.example";

    pub(crate) struct TestKey {
        kid: &'static str,
        alg: KeyAlgorithm,
        encoding: EncodingKey,
        jwk: Jwk,
    }

    pub(crate) fn ed25519(kid: &'static str) -> TestKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        TestKey {
            kid,
            alg: KeyAlgorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: Jwk::ed25519(kid, pair.public_key().as_ref()),
        }
    }

    pub(crate) fn es256(kid: &'static str) -> TestKey {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        TestKey {
            kid,
            alg: KeyAlgorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: Jwk::p256(kid, pair.public_key().as_ref()).unwrap(),
        }
    }

    pub(crate) fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: ISS.into(),
            sub: "alice".into(),
            aud: Audience::One(AUD.into()),
            exp: NOW + 300,
            iat: NOW,
            nbf: Some(NOW),
            jti: "jti-1".into(),
            client_id: "web".into(),
            scope: Some("notes:read".into()),
            act: None,
            cnf: None,
        }
    }

    pub(crate) fn sign(key: &TestKey, claims: &AccessTokenClaims) -> String {
        let mut header = Header::new(key.alg.to_jsonwebtoken());
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.into());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// `claims` signed by `key` under a JWS header of type `typ`.
    pub(crate) fn sign_with_typ<T: serde::Serialize>(
        key: &TestKey,
        claims: &T,
        typ: &str,
    ) -> String {
        let mut header = Header::new(key.alg.to_jsonwebtoken());
        header.typ = Some(typ.into());
        header.kid = Some(key.kid.into());
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    pub(crate) fn keyset(keys: &[&TestKey]) -> KeySet {
        KeySet::from_jwks(&JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() })
    }

    pub(crate) fn verifier() -> Verifier {
        Verifier::new(VerifierConfig::new(ISS, AUD))
    }

    /// Rebuilds a token with a hand-written header and the original payload and
    /// signature: the shapes an attacker can send.
    fn with_header(token: &str, header: serde_json::Value) -> String {
        let mut parts = token.splitn(2, '.');
        let _ = parts.next();
        let rest = parts.next().unwrap();
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&header).unwrap());
        format!("{header}.{rest}")
    }

    #[test]
    fn accepts_a_good_token_with_either_algorithm() {
        for key in [ed25519("k1"), es256("k2")] {
            let token = sign(&key, &claims());
            let got = verifier().verify(&keyset(&[&key]), &token, NOW).unwrap();
            assert_eq!(got, claims());
        }
    }

    #[test]
    fn refuses_oversized_tokens_before_parsing() {
        let key = ed25519("k1");
        let mut v = verifier();
        v.config.max_token_bytes = 10;
        assert_eq!(
            v.verify(&keyset(&[&key]), &sign(&key, &claims()), NOW),
            Err(TokenError::TooLarge)
        );
    }

    #[test]
    fn refuses_a_tampered_payload() {
        let key = ed25519("k1");
        let token = sign(&key, &claims());
        let mut evil = claims();
        evil.sub = "mallory".into();
        let evil_payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&evil).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], evil_payload, parts[2]);
        assert_eq!(
            verifier().verify(&keyset(&[&key]), &tampered, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn refuses_alg_none_and_hmac() {
        let key = ed25519("k1");
        let token = sign(&key, &claims());
        for alg in ["none", "HS256", "RS256"] {
            let forged =
                with_header(&token, serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": "k1"}));
            assert_eq!(
                verifier().verify(&keyset(&[&key]), &forged, NOW),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
    }

    #[test]
    fn refuses_a_key_used_with_another_algorithm() {
        let key = ed25519("k1");
        let token = sign(&key, &claims());
        let forged =
            with_header(&token, serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}));
        assert_eq!(
            verifier().verify(&keyset(&[&key]), &forged, NOW),
            Err(TokenError::AlgorithmMismatch)
        );
    }

    #[test]
    fn refuses_wrong_typ_crit_and_unknown_kid() {
        let key = ed25519("k1");
        let token = sign(&key, &claims());
        let keys = keyset(&[&key]);
        let id_token_typ =
            with_header(&token, serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": "k1"}));
        assert_eq!(verifier().verify(&keys, &id_token_typ, NOW), Err(TokenError::WrongType));
        let crit = with_header(
            &token,
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "crit": ["exp"]}),
        );
        assert_eq!(verifier().verify(&keys, &crit, NOW), Err(TokenError::CriticalHeader));
        let other = ed25519("k9");
        assert_eq!(
            verifier().verify(&keys, &sign(&other, &claims()), NOW),
            Err(TokenError::UnknownKey("k9".into()))
        );
    }

    #[test]
    fn a_key_from_the_token_header_is_never_used() {
        // The attacker signs with their own key and embeds it (RFC 8725 §3.10).
        let mine = ed25519("k1");
        let attacker = ed25519("k1");
        let token = sign(&attacker, &claims());
        let with_jwk = with_header(
            &token,
            serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1",
                               "jwk": attacker.jwk, "jku": "https://evil.example/jwks"}),
        );
        assert_eq!(
            verifier().verify(&keyset(&[&mine]), &with_jwk, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn checks_issuer_and_audience_exactly() {
        let key = ed25519("k1");
        let keys = keyset(&[&key]);
        let mut c = claims();
        c.iss = format!("{ISS}/");
        assert_eq!(verifier().verify(&keys, &sign(&key, &c), NOW), Err(TokenError::WrongIssuer));
        let mut c = claims();
        c.aud = Audience::Many(vec!["https://other.example".into()]);
        assert_eq!(verifier().verify(&keys, &sign(&key, &c), NOW), Err(TokenError::WrongAudience));
        let mut c = claims();
        c.aud = Audience::Many(vec!["https://other.example".into(), AUD.into()]);
        assert!(verifier().verify(&keys, &sign(&key, &c), NOW).is_ok());
    }

    #[test]
    fn time_checks_use_the_given_time_and_leeway() {
        let key = ed25519("k1");
        let keys = keyset(&[&key]);
        let token = sign(&key, &claims());
        let exp = NOW + 300;
        assert!(verifier().verify(&keys, &token, exp + 29).is_ok());
        assert_eq!(verifier().verify(&keys, &token, exp + 30), Err(TokenError::Expired));
        let mut c = claims();
        c.nbf = Some(NOW + 100);
        c.iat = NOW + 100;
        let early = sign(&key, &c);
        assert_eq!(verifier().verify(&keys, &early, NOW), Err(TokenError::NotYetValid));
        assert!(verifier().verify(&keys, &early, NOW + 70).is_ok());
    }

    #[test]
    fn refuses_tokens_missing_required_claims() {
        let key = ed25519("k1");
        let mut header = Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some("k1".into());
        let no_client = serde_json::json!({"iss": ISS, "sub": "a", "aud": AUD, "exp": NOW + 60,
                                            "iat": NOW, "jti": "j"});
        let token = jsonwebtoken::encode(&header, &no_client, &key.encoding).unwrap();
        assert_eq!(
            verifier().verify(&keyset(&[&key]), &token, NOW),
            Err(TokenError::Malformed("claims"))
        );
    }
}

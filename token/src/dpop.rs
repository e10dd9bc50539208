//! DPoP proofs (RFC 9449): does this request come from the holder of the key
//! a token is, or is to be, bound to?
//!
//! A DPoP proof is a JWT the client signs for each request with a key of its
//! own, carrying that key's public half in its header. This module makes the
//! checks of RFC 9449 §4.3 that need nothing but the proof and what the
//! receiver knows of the request: the proof's form, its signature by the key
//! it carries, the method and URI it was made for, its age, the server nonce
//! and the access-token hash. What needs state is the caller's: a proof's
//! `jti` must not have been seen before ([`ProofReplayCache`]), and a bound
//! token's `cnf.jkt` must be the proof key's thumbprint ([`jwk_thumbprint`]).
//!
//! Like the access-token verifier it does no I/O and takes the time as a
//! parameter.

use std::collections::HashMap;

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::jwk::{KeyAlgorithm, b64, jwk_thumbprint};
use crate::jws::{self, JwsError};

/// The JOSE `typ` of a DPoP proof (RFC 9449 §4.2).
pub const DPOP_PROOF_TYPE: &str = "dpop+jwt";
/// The largest proof accepted, bytes, checked before any decoding. A proof
/// with a P-256 key, a 43-character `ath` and a nonce is about 700 bytes.
pub const MAX_PROOF_BYTES: usize = 4096;
/// The longest `jti` accepted, characters: the replay cache keeps its hash,
/// but it is parsed and hashed first.
pub const MAX_JTI_CHARS: usize = 256;

/// Why a proof was refused. Every variant is the RFC 9449 error
/// `invalid_dpop_proof` except [`DpopError::UseNonce`] (`use_dpop_nonce`) and
/// [`DpopError::ReplayCacheFull`] (`temporarily_unavailable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("proof larger than {MAX_PROOF_BYTES} bytes")]
    TooLarge,
    #[error("malformed proof: {0}")]
    Malformed(&'static str),
    #[error("proof typ is not dpop+jwt")]
    WrongType,
    #[error("proof algorithm not allowed")]
    AlgorithmNotAllowed,
    #[error("proof header has no usable public jwk")]
    NoKey,
    #[error("proof jwk contains a private key")]
    PrivateKey,
    #[error("proof signature does not verify with its jwk")]
    BadSignature,
    #[error("proof htm does not match the request method")]
    MethodMismatch,
    #[error("proof htu does not match the request URI")]
    UriMismatch,
    #[error("proof iat outside the accepted window")]
    IatOutOfWindow,
    #[error("proof ath does not match the access token")]
    AccessTokenHashMismatch,
    #[error("proof jti already used")]
    Replayed,
    /// The replay cache is full of proofs still inside their window: a new
    /// one can be neither checked for replay nor remembered, so it is refused
    /// for now (`temporarily_unavailable`), never accepted unrecorded.
    #[error("too many recent proofs to check this one for replay; try again shortly")]
    ReplayCacheFull,
    #[error("proof key is not the key the token is bound to")]
    KeyMismatch,
    /// The server wants a nonce of its own in the proof (RFC 9449 §8): the
    /// answer carries a fresh one in `DPoP-Nonce`.
    #[error("a DPoP nonce is required")]
    UseNonce,
}

impl DpopError {
    /// The error code to send (RFC 9449 §12.2).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UseNonce => "use_dpop_nonce",
            Self::ReplayCacheFull => "temporarily_unavailable",
            _ => "invalid_dpop_proof",
        }
    }

    /// A fixed label for metrics and spans, `dpop_…` so that it is never
    /// mistaken for the access token's own refusal of the same name.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "dpop_too_large",
            Self::Malformed(_) => "dpop_malformed",
            Self::WrongType => "dpop_wrong_type",
            Self::AlgorithmNotAllowed => "dpop_algorithm_not_allowed",
            Self::NoKey => "dpop_no_key",
            Self::PrivateKey => "dpop_private_key",
            Self::BadSignature => "dpop_bad_signature",
            Self::MethodMismatch => "dpop_htm_mismatch",
            Self::UriMismatch => "dpop_htu_mismatch",
            Self::IatOutOfWindow => "dpop_iat_window",
            Self::AccessTokenHashMismatch => "dpop_ath_mismatch",
            Self::Replayed => "dpop_replayed",
            Self::ReplayCacheFull => "dpop_replay_cache_full",
            Self::KeyMismatch => "dpop_key_mismatch",
            Self::UseNonce => "use_dpop_nonce",
        }
    }
}

/// What the receiver knows of the request a proof must be for.
#[derive(Clone, Copy)]
pub struct ProofRequest<'a> {
    /// The request's method: `POST` at the token endpoint and for every gRPC
    /// call (docs/dpop-grpc.md).
    pub method: &'a str,
    /// The request's URI as the receiver was addressed; its query and
    /// fragment are ignored (RFC 9449 §4.3 step 9).
    pub uri: &'a str,
    /// The access token the request presents, whose hash the proof must
    /// carry as `ath` (RFC 9449 §4.3 step 12); `None` at the token endpoint.
    pub access_token: Option<&'a str>,
    /// The nonce the server requires in the proof, if it requires one now.
    pub nonce: Option<&'a str>,
}

impl std::fmt::Debug for ProofRequest<'_> {
    /// Never the access token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofRequest")
            .field("method", &self.method)
            .field("uri", &self.uri)
            .field("access_token", &self.access_token.map(|_| "[redacted]"))
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// How old or early a proof may be, and which signature algorithms it may use.
#[derive(Debug, Clone)]
pub struct ProofPolicy {
    pub algorithms: Vec<KeyAlgorithm>,
    /// The oldest `iat` accepted, seconds before now (RFC 9449 §11.1: a short
    /// window bounds how long a replay cache must remember a `jti`).
    pub max_age_secs: i64,
    /// Clock skew tolerated on `iat` both ways, seconds.
    pub leeway_secs: i64,
}

impl Default for ProofPolicy {
    fn default() -> Self {
        Self {
            algorithms: vec![KeyAlgorithm::EdDSA, KeyAlgorithm::ES256],
            max_age_secs: 60,
            leeway_secs: 5,
        }
    }
}

impl ProofPolicy {
    /// How long after its `iat` a proof can still be accepted: how long a
    /// replay cache must keep its `jti`.
    pub fn lifetime_secs(&self) -> i64 {
        self.max_age_secs.saturating_add(self.leeway_secs)
    }
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The JWK SHA-256 thumbprint (RFC 7638) of the proof's key: `cnf.jkt`.
    pub jkt: String,
    pub jti: String,
    pub iat: i64,
    /// The proof's `nonce`, for a server whose nonces are more than one
    /// value at a time (a current and a previous one) to check itself.
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// The public key in a proof's `jwk` header (RFC 9449 §4.2): the members a
/// thumbprint is made of, and `d`, whose presence is refused.
#[derive(Deserialize)]
struct ProofKey {
    kty: String,
    crv: String,
    x: String,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    d: Option<serde_json::Value>,
}

impl ProofKey {
    fn algorithm(&self) -> Option<KeyAlgorithm> {
        match (self.kty.as_str(), self.crv.as_str(), &self.y) {
            ("OKP", "Ed25519", None) => Some(KeyAlgorithm::EdDSA),
            ("EC", "P-256", Some(_)) => Some(KeyAlgorithm::ES256),
            _ => None,
        }
    }

    fn decoding_key(&self) -> Option<DecodingKey> {
        match &self.y {
            None => DecodingKey::from_ed_components(&self.x).ok(),
            Some(y) => DecodingKey::from_ec_components(&self.x, y).ok(),
        }
    }

    /// Its RFC 7638 thumbprint, as `cnf.jkt` carries it.
    fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.kty, &self.crv, &self.x, self.y.as_deref())
    }
}

/// `ath` (RFC 9449 §4.2): the base64url SHA-256 of the access token's ASCII.
pub fn access_token_hash(access_token: &str) -> String {
    b64(&Sha256::digest(access_token.as_bytes()))
}

/// RFC 9449 §4.3 steps 1–12, all but the `jti` replay check (the caller's
/// [`ProofReplayCache`], once the rest of its request is known good) and
/// the key binding (the caller compares [`VerifiedProof::jkt`] with the
/// token's `cnf.jkt`).
pub fn verify_proof(
    proof: &str,
    request: &ProofRequest<'_>,
    policy: &ProofPolicy,
    now: i64,
) -> Result<VerifiedProof, DpopError> {
    // Step 1 (one proof) is the transport's: one `DPoP` header, one `dpop`
    // metadata entry.
    if proof.len() > MAX_PROOF_BYTES {
        return Err(DpopError::TooLarge);
    }
    // Step 2: a well-formed JWS in compact form.
    let header = jws::header(proof)?;
    // Step 4: typ is exactly dpop+jwt.
    if header.get("typ").and_then(|v| v.as_str()) != Some(DPOP_PROOF_TYPE) {
        return Err(DpopError::WrongType);
    }
    // Step 5: an asymmetric algorithm we allow (never `none`, never a MAC).
    let alg = header
        .get("alg")
        .and_then(|v| v.as_str())
        .and_then(KeyAlgorithm::parse)
        .filter(|alg| policy.algorithms.contains(alg))
        .ok_or(DpopError::AlgorithmNotAllowed)?;
    // RFC 7515 §4.1.11: we understand no critical extension.
    if header.contains_key("crit") {
        return Err(DpopError::Malformed("critical header"));
    }
    // Step 7: the public key, and only the public key.
    let key = header
        .get("jwk")
        .and_then(|jwk| ProofKey::deserialize(jwk).ok())
        .ok_or(DpopError::NoKey)?;
    if key.d.is_some() {
        return Err(DpopError::PrivateKey);
    }
    if key.algorithm() != Some(alg) {
        return Err(DpopError::NoKey);
    }
    let decoding = key.decoding_key().ok_or(DpopError::NoKey)?;
    // Step 6: the signature, with the key the proof carries.
    let claims: ProofClaims = jws::verify(proof, alg, &decoding)?;
    // Step 3: the claims it must have (missing ones failed to deserialize).
    if claims.jti.is_empty() || claims.jti.chars().count() > MAX_JTI_CHARS {
        return Err(DpopError::Malformed("jti"));
    }
    // Step 8: the method, compared as given (methods are case-sensitive,
    // RFC 9110 §9.1).
    if claims.htm != request.method {
        return Err(DpopError::MethodMismatch);
    }
    // Step 9: the URI, without query and fragment, after normalisation.
    if !same_target(&claims.htu, request.uri) {
        return Err(DpopError::UriMismatch);
    }
    // Step 10: the nonce, when the server requires one.
    if let Some(expected) = request.nonce
        && !claims.nonce.as_deref().is_some_and(|nonce| ct_eq(nonce, expected))
    {
        return Err(DpopError::UseNonce);
    }
    // Step 11: iat within the window.
    let earliest = now.saturating_sub(policy.max_age_secs).saturating_sub(policy.leeway_secs);
    let latest = now.saturating_add(policy.leeway_secs);
    if !(earliest..=latest).contains(&claims.iat) {
        return Err(DpopError::IatOutOfWindow);
    }
    // Step 12: bound to the access token presented with it, if any.
    if let Some(token) = request.access_token {
        let expected = access_token_hash(token);
        if !claims.ath.as_deref().is_some_and(|ath| ct_eq(ath, &expected)) {
            return Err(DpopError::AccessTokenHashMismatch);
        }
    }
    Ok(VerifiedProof {
        jkt: key.thumbprint(),
        jti: claims.jti,
        iat: claims.iat,
        nonce: claims.nonce,
    })
}

/// RFC 9449 §4.3 step 9: `htu` and the request URI name the same resource,
/// ignoring query and fragment, after RFC 3986 §6.2.2 (case, percent-encoding,
/// dot segments) and §6.2.3 (default port, empty path) normalisation.
fn same_target(htu: &str, uri: &str) -> bool {
    fn normal(uri: &str) -> Option<url::Url> {
        let mut url = url::Url::parse(uri).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        url.set_query(None);
        url.set_fragment(None);
        Some(url)
    }
    match (normal(htu), normal(uri)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

impl From<JwsError> for DpopError {
    fn from(err: JwsError) -> Self {
        match err {
            JwsError::Malformed(what) => Self::Malformed(what),
            JwsError::BadSignature => Self::BadSignature,
        }
    }
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The `jti`s of proofs accepted recently (RFC 9449 §11.1), so that each
/// proof is accepted once.
///
/// Bounds: a `jti` is kept until its proof could no longer pass the `iat`
/// window anyway ([`ProofPolicy::lifetime_secs`]), as a SHA-256 of the proof
/// key's thumbprint and the `jti` (32 bytes and a time). At most `capacity`
/// are kept; when full of live entries a new proof is refused
/// ([`DpopError::ReplayCacheFull`]), never accepted unrecorded. Callers record a proof only once the
/// rest of its request is known good (the client authenticated, the token
/// verified and bound to the proof's key), so a caller without a client or a
/// bound token cannot fill it.
#[derive(Debug)]
pub struct ProofReplayCache {
    /// The first 128 bits of SHA-256(jkt, 0, jti): as unlikely to collide
    /// by chance as a `jti` is to repeat, at half the memory per entry.
    seen: HashMap<[u8; 16], i64>,
    capacity: usize,
    lifetime_secs: i64,
    /// No entry expires before this time: a full cache is not swept again
    /// until then.
    next_expiry: i64,
}

impl ProofReplayCache {
    pub fn new(capacity: usize, policy: &ProofPolicy) -> Self {
        Self {
            seen: HashMap::new(),
            capacity,
            lifetime_secs: policy.lifetime_secs(),
            next_expiry: i64::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `proof` as used at `now`: `Err(Replayed)` if it was seen
    /// before, `Err(ReplayCacheFull)` if there is no room to remember it.
    pub fn record(&mut self, proof: &VerifiedProof, now: i64) -> Result<(), DpopError> {
        let key = self.admit(proof, now)?;
        // The first second at which the proof fails the iat window: until
        // then (its last second included) a replay must be caught.
        let expires = proof.iat.saturating_add(self.lifetime_secs).saturating_add(1).max(now);
        self.seen.insert(key, expires);
        self.next_expiry = self.next_expiry.min(expires);
        Ok(())
    }

    /// What [`Self::record`] would answer, without recording: for a caller
    /// that remembers a proof only once the request it came with has proven
    /// more (a public client's grant credential).
    pub fn check(&mut self, proof: &VerifiedProof, now: i64) -> Result<(), DpopError> {
        self.admit(proof, now).map(|_| ())
    }

    /// The cache key of `proof` if it is new and there is room for it.
    fn admit(&mut self, proof: &VerifiedProof, now: i64) -> Result<[u8; 16], DpopError> {
        let key: [u8; 16] = {
            let mut hasher = Sha256::new();
            hasher.update(proof.jkt.as_bytes());
            hasher.update([0]);
            hasher.update(proof.jti.as_bytes());
            let digest: [u8; 32] = hasher.finalize().into();
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest[..16]);
            key
        };
        if let Some(&expires) = self.seen.get(&key)
            && now < expires
        {
            return Err(DpopError::Replayed);
        }
        if self.seen.len() >= self.capacity && now >= self.next_expiry {
            self.seen.retain(|_, expires| now < *expires);
            self.next_expiry = self.seen.values().copied().min().unwrap_or(i64::MAX);
        }
        if self.seen.len() >= self.capacity && !self.seen.contains_key(&key) {
            return Err(DpopError::ReplayCacheFull);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
    };

    const NOW: i64 = 1_700_000_000;
    const URI: &str = "https://api.example.com/tollgate.resource.v1.ProfileService/GetProfile";

    /// A client's DPoP key: signs proofs and knows its public JWK.
    struct ClientKey {
        alg: KeyAlgorithm,
        encoding: EncodingKey,
        jwk: serde_json::Value,
    }

    fn ed25519() -> ClientKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        ClientKey {
            alg: KeyAlgorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())}),
        }
    }

    fn p256() -> ClientKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        ClientKey {
            alg: KeyAlgorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])
            }),
        }
    }

    impl ClientKey {
        fn proof_with(
            &self,
            header: impl FnOnce(&mut Header),
            claims: impl FnOnce(&mut serde_json::Value),
        ) -> String {
            let mut h = Header::new(self.alg.to_jsonwebtoken());
            h.typ = Some(DPOP_PROOF_TYPE.into());
            h.jwk = Some(serde_json::from_value(self.jwk.clone()).unwrap());
            header(&mut h);
            let mut c = serde_json::json!({
                "jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": URI, "iat": NOW,
            });
            claims(&mut c);
            jsonwebtoken::encode(&h, &c, &self.encoding).unwrap()
        }

        fn proof(&self) -> String {
            self.proof_with(|_| {}, |_| {})
        }

        fn thumbprint(&self) -> String {
            let j = &self.jwk;
            let s = |m: &str| j[m].as_str().unwrap().to_owned();
            jwk_thumbprint(&s("kty"), &s("crv"), &s("x"), j.get("y").and_then(|y| y.as_str()))
        }
    }

    fn request() -> ProofRequest<'static> {
        ProofRequest { method: "POST", uri: URI, access_token: None, nonce: None }
    }

    fn check(proof: &str, request: &ProofRequest<'_>) -> Result<VerifiedProof, DpopError> {
        verify_proof(proof, request, &ProofPolicy::default(), NOW)
    }

    #[test]
    fn a_proof_from_either_key_type_verifies_and_names_its_key() {
        for key in [ed25519(), p256()] {
            let proof = check(&key.proof(), &request()).unwrap();
            assert_eq!(proof.jkt, key.thumbprint());
            assert_eq!((proof.jti.as_str(), proof.iat), ("e1j3V_bKic8-LAEB", NOW));
        }
    }

    #[test]
    fn a_proof_for_another_method_or_target_is_refused() {
        let key = ed25519();
        let get = key.proof_with(|_| {}, |c| c["htm"] = "GET".into());
        assert_eq!(check(&get, &request()), Err(DpopError::MethodMismatch));
        for other in [
            "https://api.example.com/tollgate.resource.v1.ProfileService/UpdateProfile",
            "https://other.example.com/tollgate.resource.v1.ProfileService/GetProfile",
            "http://api.example.com/tollgate.resource.v1.ProfileService/GetProfile",
            "https://api.example.com:8443/tollgate.resource.v1.ProfileService/GetProfile",
        ] {
            let proof = key.proof_with(|_| {}, |c| c["htu"] = other.into());
            assert_eq!(check(&proof, &request()), Err(DpopError::UriMismatch), "{other}");
        }
    }

    #[test]
    fn the_target_is_compared_after_normalisation_and_without_query() {
        let key = ed25519();
        for same in [
            "HTTPS://API.example.com:443/tollgate.resource.v1.ProfileService/GetProfile",
            "https://api.example.com/tollgate.resource.v1.ProfileService/GetProfile?x=1#f",
        ] {
            let proof = key.proof_with(|_| {}, |c| c["htu"] = same.into());
            assert!(check(&proof, &request()).is_ok(), "{same}");
        }
    }

    #[test]
    fn a_proof_outside_its_time_window_is_refused() {
        let key = ed25519();
        let policy = ProofPolicy::default();
        for (iat, ok) in [
            (NOW - policy.lifetime_secs(), true),
            (NOW - policy.lifetime_secs() - 1, false),
            (NOW + policy.leeway_secs, true),
            (NOW + policy.leeway_secs + 1, false),
        ] {
            let proof = key.proof_with(|_| {}, |c| c["iat"] = iat.into());
            let result = check(&proof, &request());
            assert_eq!(result.is_ok(), ok, "iat {iat}: {result:?}");
            if !ok {
                assert_eq!(result, Err(DpopError::IatOutOfWindow));
            }
        }
    }

    #[test]
    fn a_proof_must_carry_the_hash_of_the_token_it_comes_with() {
        let key = ed25519();
        let with_token = ProofRequest { access_token: Some("the.access.token"), ..request() };
        let bound =
            key.proof_with(|_| {}, |c| c["ath"] = access_token_hash("the.access.token").into());
        assert!(check(&bound, &with_token).is_ok());
        let other =
            key.proof_with(|_| {}, |c| c["ath"] = access_token_hash("another.token").into());
        assert_eq!(check(&other, &with_token), Err(DpopError::AccessTokenHashMismatch));
        assert_eq!(check(&key.proof(), &with_token), Err(DpopError::AccessTokenHashMismatch));
    }

    #[test]
    fn a_required_nonce_must_be_the_servers() {
        let key = ed25519();
        let wants = ProofRequest { nonce: Some("server-nonce-1"), ..request() };
        assert_eq!(check(&key.proof(), &wants), Err(DpopError::UseNonce));
        assert_eq!(DpopError::UseNonce.code(), "use_dpop_nonce");
        let stale = key.proof_with(|_| {}, |c| c["nonce"] = "server-nonce-0".into());
        assert_eq!(check(&stale, &wants), Err(DpopError::UseNonce));
        let fresh = key.proof_with(|_| {}, |c| c["nonce"] = "server-nonce-1".into());
        assert!(check(&fresh, &wants).is_ok());
    }

    #[test]
    fn forged_and_malformed_proofs_are_refused() {
        let (key, attacker) = (ed25519(), ed25519());
        // Signed by one key, claiming another's: the signature fails.
        let forged = attacker.proof_with(|h| h.jwk = key.proof_header_jwk(), |_| {});
        assert_eq!(check(&forged, &request()), Err(DpopError::BadSignature));
        let wrong_typ = key.proof_with(|h| h.typ = Some("JWT".into()), |_| {});
        assert_eq!(check(&wrong_typ, &request()), Err(DpopError::WrongType));
        let at_jwt = key.proof_with(|h| h.typ = Some("at+jwt".into()), |_| {});
        assert_eq!(check(&at_jwt, &request()), Err(DpopError::WrongType));
        let no_key = key.proof_with(|h| h.jwk = None, |_| {});
        assert_eq!(check(&no_key, &request()), Err(DpopError::NoKey));
        let no_jti = key.proof_with(|_| {}, |c| c["jti"] = "".into());
        assert_eq!(check(&no_jti, &request()), Err(DpopError::Malformed("jti")));
        let missing_htu = key.proof_with(
            |_| {},
            |c| {
                c.as_object_mut().unwrap().remove("htu");
            },
        );
        assert_eq!(check(&missing_htu, &request()), Err(DpopError::Malformed("claims")));
        assert_eq!(check("a.b", &request()), Err(DpopError::Malformed("not three segments")));
        assert_eq!(check(&"a".repeat(MAX_PROOF_BYTES + 1), &request()), Err(DpopError::TooLarge));
        // An algorithm the policy does not allow, although the key could use it.
        let ed_only = ProofPolicy { algorithms: vec![KeyAlgorithm::EdDSA], ..Default::default() };
        let es = p256().proof();
        assert_eq!(
            verify_proof(&es, &request(), &ed_only, NOW),
            Err(DpopError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn a_proof_carrying_a_private_key_is_refused() {
        let key = ed25519();
        let mut jwk = key.jwk.clone();
        jwk["d"] = "bm90LXJlYWxseS1hLWtleQ".into();
        let header = b64(serde_json::json!({"typ": DPOP_PROOF_TYPE, "alg": "EdDSA", "jwk": jwk})
            .to_string()
            .as_bytes());
        let signed = key.proof();
        let rest = signed.split_once('.').unwrap().1;
        assert_eq!(check(&format!("{header}.{rest}"), &request()), Err(DpopError::PrivateKey));
    }

    #[test]
    fn each_proof_is_accepted_once_within_its_lifetime() {
        let key = ed25519();
        let policy = ProofPolicy::default();
        let mut cache = ProofReplayCache::new(2, &policy);
        let first = check(&key.proof(), &request()).unwrap();
        assert_eq!(cache.record(&first, NOW), Ok(()));
        assert_eq!(cache.record(&first, NOW + 1), Err(DpopError::Replayed));
        // The same jti from another key is another proof.
        let other = check(&ed25519().proof(), &request()).unwrap();
        assert_eq!(cache.record(&other, NOW), Ok(()));
        // Full of live entries: a new proof is refused, not accepted unrecorded.
        let third =
            check(&key.proof_with(|_| {}, |c| c["jti"] = "jti-3".into()), &request()).unwrap();
        assert_eq!(cache.record(&third, NOW), Err(DpopError::ReplayCacheFull));
        assert_eq!(DpopError::ReplayCacheFull.code(), "temporarily_unavailable");
        assert_eq!(cache.len(), 2);
        // In the last second its iat window admits it, the proof still
        // verifies, and is still caught as a replay.
        let last = NOW + policy.lifetime_secs();
        let again = verify_proof(&key.proof(), &request(), &policy, last).unwrap();
        assert_eq!(cache.record(&again, last), Err(DpopError::Replayed));
        // Once the first two could no longer pass the window, they make room.
        assert_eq!(
            verify_proof(&key.proof(), &request(), &policy, last + 1).map(|_| ()),
            Err(DpopError::IatOutOfWindow)
        );
        assert_eq!(cache.record(&third, last + 1), Ok(()));
        assert_eq!(cache.len(), 1);
    }

    impl ClientKey {
        fn proof_header_jwk(&self) -> Option<jsonwebtoken::jwk::Jwk> {
            Some(serde_json::from_value(self.jwk.clone()).unwrap())
        }
    }
}

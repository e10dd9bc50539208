//! DPoP at the token endpoint (RFC 9449 §5): which key, if any, the tokens a
//! request gets are bound to.
//!
//! A client that sends a proof gets access tokens bound to the proof's key
//! (`cnf.jkt`, `token_type: DPoP`); a public client's grant, and so its
//! refresh tokens, is bound to that key too, and each refresh must prove it
//! again (checked by the refresh grant before the token is spent). A client
//! registered with `dpop_bound_access_tokens` must send a proof. The proof
//! checks themselves are `tollgate_token::dpop`'s; this module adds the
//! transport's URI, the replay cache and the client's registration.

use std::sync::Mutex;

use base64::Engine as _;
use tollgate_token::OAuthError;
use tollgate_token::dpop::{ProofPolicy, ProofReplayCache, ProofRequest, verify_proof};

use super::model::Client;

/// The most proofs the token endpoint remembers for replay detection. A
/// proof is remembered through its last valid second (60 s of age plus 5 s
/// of leeway, RFC 9449 §11.1): at this bound about 500 DPoP token requests a
/// second. Beyond it a proof is refused as `temporarily_unavailable`, never
/// accepted unremembered. About 1.5 MiB when full.
pub const TOKEN_ENDPOINT_REPLAY_CAPACITY: usize = 32_768;

/// A DPoP proof as a transport received it, with the URI of the endpoint it
/// was sent to, which the proof's `htu` must name.
#[derive(Clone)]
pub struct PresentedProof {
    pub proof: String,
    /// The endpoint as clients address it: the token endpoint advertised in
    /// the metadata, or the gRPC method's URI (docs/dpop-grpc.md).
    pub uri: String,
}

/// How long one server nonce is handed out, seconds. A nonce is accepted
/// while it is current and for one period after (RFC 9449 §8: the server
/// decides), so a client that got one just before a change has a full period
/// to use it.
pub const NONCE_PERIOD_SECS: i64 = 60;

/// The key server nonces are made with (RFC 9449 §8). Derived from the
/// cookie key, so replicas sharing `AUTH_COOKIE_KEY_FILE` accept each
/// other's nonces. Never printed.
#[derive(Clone)]
pub struct NonceKey(aws_lc_rs::hmac::Key);

impl NonceKey {
    /// The nonce key of a deployment whose cookie key is `master`.
    pub fn derive(master: &[u8]) -> Self {
        let base = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, master);
        let derived = aws_lc_rs::hmac::sign(&base, b"tollgate dpop nonce v1");
        Self(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// The nonce of the period `now` falls in: the period's number and a MAC
    /// of it, base64url. Stateless: any replica with the key checks it.
    pub fn nonce_at(&self, now: i64) -> String {
        self.nonce_of_period(now.div_euclid(NONCE_PERIOD_SECS))
    }

    fn nonce_of_period(&self, period: i64) -> String {
        let period = period.to_be_bytes();
        let tag = aws_lc_rs::hmac::sign(&self.0, &period);
        let mut bytes = period.to_vec();
        bytes.extend_from_slice(&tag.as_ref()[..16]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Whether `nonce` is the current period's or the previous one's.
    pub fn accepts(&self, nonce: &str, now: i64) -> bool {
        let current = now.div_euclid(NONCE_PERIOD_SECS);
        [current, current - 1].into_iter().any(|period| {
            let expected = self.nonce_of_period(period);
            bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), nonce.as_bytes()))
        })
    }
}

impl std::fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceKey([redacted])")
    }
}

/// A key a token request proved: its thumbprint, and the proof if it is
/// still to be remembered ([`DpopGate::settle`]).
#[derive(Debug)]
pub struct ProvenKey {
    pub jkt: String,
    unrecorded: Option<tollgate_token::dpop::VerifiedProof>,
}

impl std::fmt::Debug for PresentedProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedProof").field("uri", &self.uri).finish_non_exhaustive()
    }
}

/// The token endpoint's DPoP state: the proof policy, the proofs seen, and
/// the nonce key when proofs must carry a server nonce.
pub struct DpopGate {
    policy: ProofPolicy,
    seen: Mutex<ProofReplayCache>,
    nonces: Option<NonceKey>,
}

impl std::fmt::Debug for DpopGate {
    /// Not the proofs seen: up to 32,768 entries.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopGate").field("nonces", &self.nonces.is_some()).finish_non_exhaustive()
    }
}

impl Default for DpopGate {
    fn default() -> Self {
        Self::new(None)
    }
}

impl DpopGate {
    /// With `nonces`, every proof must carry a current server nonce
    /// (`AUTH_DPOP_NONCE`).
    pub fn new(nonces: Option<NonceKey>) -> Self {
        let policy = ProofPolicy::default();
        let seen = Mutex::new(ProofReplayCache::new(TOKEN_ENDPOINT_REPLAY_CAPACITY, &policy));
        Self { policy, seen, nonces }
    }

    /// The nonce to hand a client now (`DPoP-Nonce`), when nonces are on.
    pub fn fresh_nonce(&self, now: i64) -> Option<String> {
        self.nonces.as_ref().map(|key| key.nonce_at(now))
    }

    /// The JWS algorithms a proof may use, for the metadata
    /// (`dpop_signing_alg_values_supported`).
    pub fn algorithms(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.policy.algorithms.iter().map(|alg| alg.as_str())
    }

    /// RFC 9449 §5: the key `proof` proves for this token request of the
    /// authenticated `client`, or `None` for a bearer token.
    ///
    /// A confidential client's proof is remembered here: the client has
    /// proven who it is. A public client proves nothing by its id alone, so
    /// its proof is only checked against the cache here and remembered by
    /// [`Self::settle`] once its grant has succeeded (a valid code, refresh
    /// token or device code): nobody can fill the cache with a public
    /// client's id and proofs of their own making. Its grant credential is
    /// single-use, so two requests with one proof cannot both succeed.
    pub fn bound_key(
        &self,
        client: &Client,
        proof: Option<&PresentedProof>,
        now: i64,
    ) -> Result<Option<ProvenKey>, OAuthError> {
        let Some(presented) = proof else {
            if client.dpop_bound_access_tokens {
                return Err(OAuthError::invalid_dpop_proof(
                    "this client must send a DPoP proof with every token request",
                ));
            }
            return Ok(None);
        };
        let request =
            ProofRequest { method: "POST", uri: &presented.uri, access_token: None, nonce: None };
        let proof = verify_proof(&presented.proof, &request, &self.policy, now)?;
        // RFC 9449 §8: without the current (or the previous) nonce, the
        // answer is use_dpop_nonce with a fresh one, and the proof is not
        // remembered: the client makes a new one with the nonce.
        if let Some(key) = &self.nonces
            && !proof.nonce.as_deref().is_some_and(|nonce| key.accepts(nonce, now))
        {
            return Err(OAuthError::UseDpopNonce(
                "the authorization server requires a DPoP nonce; use the one in DPoP-Nonce".into(),
            ));
        }
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if client.is_public() {
            seen.check(&proof, now)?;
            Ok(Some(ProvenKey { jkt: proof.jkt.clone(), unrecorded: Some(proof) }))
        } else {
            seen.record(&proof, now)?;
            Ok(Some(ProvenKey { jkt: proof.jkt, unrecorded: None }))
        }
    }

    /// Remembers a public client's proof once its grant has succeeded.
    pub fn settle(&self, key: &ProvenKey, now: i64) -> Result<(), OAuthError> {
        let Some(proof) = &key.unrecorded else { return Ok(()) };
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(seen.record(proof, now)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_for_its_period_and_the_next_and_only_with_its_key() {
        let key = NonceKey::derive(&[7u8; 64]);
        let t = 1_700_000_040; // 40 s into a period
        let nonce = key.nonce_at(t);
        assert_eq!(key.nonce_at(t + 10), nonce, "the same nonce within a period");
        assert!(key.accepts(&nonce, t));
        assert!(key.accepts(&nonce, t + NONCE_PERIOD_SECS), "the next period still takes it");
        assert!(!key.accepts(&nonce, t + 2 * NONCE_PERIOD_SECS), "two periods on: rotated out");
        assert_ne!(key.nonce_at(t + NONCE_PERIOD_SECS), nonce, "a new period, a new nonce");
        assert!(!NonceKey::derive(&[8u8; 64]).accepts(&nonce, t), "another deployment's key");
        assert!(!key.accepts("", t));
        assert_eq!(format!("{key:?}"), "NonceKey([redacted])");
    }
}

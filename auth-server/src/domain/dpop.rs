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
#[derive(Debug, Clone)]
pub struct PresentedProof {
    pub proof: String,
    /// The endpoint as clients address it: the token endpoint advertised in
    /// the metadata, or the gRPC method's URI (docs/dpop-grpc.md).
    pub uri: String,
}

/// The token endpoint's DPoP state: the proof policy and the proofs seen.
#[derive(Debug)]
pub struct DpopGate {
    policy: ProofPolicy,
    seen: Mutex<ProofReplayCache>,
}

impl Default for DpopGate {
    fn default() -> Self {
        let policy = ProofPolicy::default();
        let seen = Mutex::new(ProofReplayCache::new(TOKEN_ENDPOINT_REPLAY_CAPACITY, &policy));
        Self { policy, seen }
    }
}

impl DpopGate {
    /// The JWS algorithms a proof may use, for the metadata
    /// (`dpop_signing_alg_values_supported`).
    pub fn algorithms(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.policy.algorithms.iter().map(|alg| alg.as_str())
    }

    /// RFC 9449 §5: the thumbprint of the key `proof` proves for this token
    /// request of the authenticated `client`, or `None` for a bearer token.
    /// The proof is remembered only once its client has authenticated, so
    /// an anonymous caller cannot fill the cache under a confidential
    /// client's name.
    pub fn bound_key(
        &self,
        client: &Client,
        proof: Option<&PresentedProof>,
        now: i64,
    ) -> Result<Option<String>, OAuthError> {
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
        self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).record(&proof, now)?;
        Ok(Some(proof.jkt))
    }
}

//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521 §4.2):
//! the client signs a short-lived JWT with a key whose public half it
//! registered, instead of sending a secret.

use std::collections::HashSet;

use serde::Deserialize;
use tollgate_token::{JwkSet, KeyAlgorithm, KeySet, OAuthError};

use super::model::Client;
use super::{OAuthCore, storage_failure};
use crate::storage::Store;

/// The longest an assertion may live (`exp` − now): long enough for one
/// request, short enough that the replay cache stays small.
pub const MAX_ASSERTION_LIFETIME_SECS: i64 = 300;
/// Clock skew tolerated on `iat`.
const LEEWAY_SECS: i64 = 30;

#[derive(Deserialize)]
struct AssertionClaims {
    exp: i64,
    iat: i64,
    jti: String,
}

/// The client an assertion names (`iss`/`sub`), read before it is verified so
/// the right keys can be found. Never trusted beyond that.
pub fn assertion_subject(assertion: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Unverified {
        sub: String,
    }
    let payload = assertion.split('.').nth(1)?;
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).ok()?;
    serde_json::from_slice::<Unverified>(&bytes).ok().map(|u| u.sub)
}

impl<S: Store> OAuthCore<S> {
    /// RFC 7523 §3: signature by one of the client's registered keys; `iss` and
    /// `sub` the client; `aud` this server (its issuer or token endpoint);
    /// `exp` in the future and at most five minutes away; `iat` not in the
    /// future; `jti` never seen before from this client.
    pub(super) async fn verify_client_assertion(
        &self,
        client: &Client,
        assertion: &str,
    ) -> Result<(), OAuthError> {
        let bad = || OAuthError::invalid_client("client assertion is invalid");
        let Some(jwks) = &client.jwks else {
            return Err(OAuthError::invalid_client("client is not registered for private_key_jwt"));
        };
        let header = jsonwebtoken::decode_header(assertion).map_err(|_| bad())?;
        let alg = match header.alg {
            jsonwebtoken::Algorithm::EdDSA => KeyAlgorithm::EdDSA,
            jsonwebtoken::Algorithm::ES256 => KeyAlgorithm::ES256,
            _ => return Err(OAuthError::invalid_client("client assertion algorithm not allowed")),
        };
        let keys = KeySet::from_jwks(&JwkSet { keys: jwks.clone() });
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation
            .set_audience(&[self.settings.issuer.as_str(), self.settings.token_endpoint.as_str()]);
        validation.set_issuer(&[client.client_id.as_str()]);
        validation.sub = Some(client.client_id.clone());
        // Time is checked below against our clock, not the system's.
        validation.validate_exp = false;
        validation.required_spec_claims = HashSet::from(["iss", "sub", "aud"].map(str::to_owned));
        let candidates = keys
            .iter()
            .filter(|(kid, key_alg, _)| {
                *key_alg == alg && header.kid.as_deref().is_none_or(|wanted| wanted == *kid)
            })
            .map(|(_, _, key)| key);
        let claims = candidates
            .filter_map(|key| {
                jsonwebtoken::decode::<AssertionClaims>(assertion, key, &validation).ok()
            })
            .map(|data| data.claims)
            .next()
            .ok_or_else(bad)?;

        let now = self.clock.now();
        if claims.exp <= now {
            return Err(OAuthError::invalid_client("client assertion has expired"));
        }
        if claims.exp - now > MAX_ASSERTION_LIFETIME_SECS {
            return Err(OAuthError::invalid_client("client assertion lives too long"));
        }
        if claims.iat > now + LEEWAY_SECS {
            return Err(OAuthError::invalid_client("client assertion was issued in the future"));
        }
        if claims.jti.is_empty() {
            return Err(bad());
        }
        let fresh = self
            .store
            .use_assertion_jti(&client.client_id, &claims.jti, claims.exp, now)
            .await
            .map_err(storage_failure)?;
        if !fresh {
            tracing::warn!(client_id = %client.client_id, "client assertion replay refused");
            return Err(OAuthError::invalid_client("client assertion was already used"));
        }
        Ok(())
    }
}

//! Client authentication at the token, introspection, revocation and device
//! endpoints (RFC 6749 §2.3, §3.2.1): who is calling, proven how.
//!
//! - `client_secret_basic` / `client_secret_post`: the secret, compared with its
//!   stored SHA-256 in constant time (see [`super::secrets`]);
//! - `private_key_jwt` (RFC 7523 §2.2 and §3, RFC 7521 §4.2): the client signs a
//!   short-lived JWT with a key whose public half it registered, instead of
//!   sending a secret; each assertion's `jti` is spent once;
//! - `tls_client_auth` (RFC 8705 §2.1): the client's TLS client certificate,
//!   its chain verified by the TLS layer against the deployment's client CA,
//!   its DNS name the one registered; the tokens it gets are bound to that
//!   certificate (§3, `cnf.x5t#S256`);
//! - `none`: a public client names itself and proves nothing here (PKCE and
//!   redirect URIs protect its flows).

use std::collections::HashSet;

use serde::Deserialize;
use tollgate_token::{JwkSet, KeyAlgorithm, KeySet, OAuthError, Secret};

use super::model::Client;
use super::{OAuthCore, secrets, storage_failure};
use crate::storage::ClientStore;

/// How a client authenticated at the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic.
    SecretBasic { client_id: String, secret: Secret },
    /// `client_secret_post`: in the form body.
    SecretPost { client_id: String, secret: Secret },
    /// `private_key_jwt` (RFC 7523 §2.2): a JWT signed with the client's key.
    PrivateKeyJwt { client_id: String, assertion: Secret },
    /// `tls_client_auth` (RFC 8705 §2.1): its id, and the certificate the
    /// connection presented.
    TlsCertificate { client_id: String, certificate: PeerCertificate },
    /// A public client: only its id (`none`).
    None { client_id: String },
}

/// The client certificate a TLS connection presented (its chain already
/// verified by the TLS layer against the configured client CA).
#[derive(Clone, PartialEq, Eq)]
pub struct PeerCertificate(std::sync::Arc<[u8]>);

impl std::fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PeerCertificate").field(&self.thumbprint()).finish()
    }
}

impl PeerCertificate {
    /// The end-entity certificate, DER.
    pub fn from_der(der: &[u8]) -> Self {
        Self(der.into())
    }

    /// RFC 8705 §3.1 `x5t#S256`.
    pub fn thumbprint(&self) -> String {
        tollgate_token::certificate_thumbprint(&self.0)
    }

    /// Whether one of the certificate's dNSName subject alternative names is
    /// `name` (RFC 8705 §2.1.2: the registered value, compared exactly but for
    /// ASCII case). Not a TLS client's server-name check: that one lets a
    /// wildcard certificate (`*.example`) stand for every name under it, and
    /// a holder of one would pass for every client registered there.
    fn names(&self, name: &str) -> bool {
        let der = rustls::pki_types::CertificateDer::from(self.0.as_ref());
        let Ok(cert) = webpki::EndEntityCert::try_from(&der) else { return false };
        cert.valid_dns_names().any(|san| san.eq_ignore_ascii_case(name))
    }
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            Self::SecretBasic { client_id, .. }
            | Self::SecretPost { client_id, .. }
            | Self::PrivateKeyJwt { client_id, .. }
            | Self::TlsCertificate { client_id, .. }
            | Self::None { client_id } => client_id,
        }
    }

    /// The id as it may appear in logs and spans: the caller chose it, and an
    /// unknown one can be as long as the body limit allows ([`super::clipped`]).
    pub fn logged_id(&self) -> &str {
        super::clipped(self.client_id())
    }

    /// The RFC 8414 `token_endpoint_auth_method` name (spans, audit).
    pub fn method(&self) -> &'static str {
        match self {
            Self::SecretBasic { .. } => "client_secret_basic",
            Self::SecretPost { .. } => "client_secret_post",
            Self::PrivateKeyJwt { .. } => "private_key_jwt",
            Self::TlsCertificate { .. } => "tls_client_auth",
            Self::None { .. } => "none",
        }
    }

    /// The same credentials from a connection that presented `certificate`:
    /// a request with no other credential becomes `tls_client_auth`. A request
    /// with a secret or an assertion keeps it (one method per request, RFC
    /// 6749 §2.3), and its tokens are not bound.
    pub fn presented_with(self, certificate: Option<PeerCertificate>) -> Self {
        match (self, certificate) {
            (Self::None { client_id }, Some(certificate)) => {
                Self::TlsCertificate { client_id, certificate }
            }
            (auth, _) => auth,
        }
    }

    fn secret(&self) -> Option<&Secret> {
        match self {
            Self::SecretBasic { secret, .. } | Self::SecretPost { secret, .. } => Some(secret),
            Self::PrivateKeyJwt { .. } | Self::TlsCertificate { .. } | Self::None { .. } => None,
        }
    }
}

/// A client that has proven who it is at this request, and how.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub client: Client,
    /// RFC 8705 §3: the `x5t#S256` of the certificate it authenticated with
    /// (`tls_client_auth`); the access tokens it is issued are bound to it.
    pub certificate_thumbprint: Option<String>,
    /// RFC 9449 §5: the thumbprint of the DPoP key this request proved; the
    /// access tokens it is issued are bound to it.
    pub dpop_jkt: Option<String>,
}

impl From<Client> for Authenticated {
    fn from(client: Client) -> Self {
        Self { client, certificate_thumbprint: None, dpop_jkt: None }
    }
}

impl std::ops::Deref for Authenticated {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl<S: ClientStore> OAuthCore<S> {
    /// RFC 6749 §2.3 and §3.2.1: identifies and authenticates the client. A
    /// confidential client must prove its secret; a public client must not
    /// present one; a client with registered keys must use them.
    #[tracing::instrument(skip_all, fields(client_id = %auth.logged_id(), method = auth.method()))]
    pub async fn authenticate_client(
        &self,
        auth: &ClientAuth,
    ) -> Result<Authenticated, OAuthError> {
        let client = self.verify_client(auth).await?;
        // Per client, once it has proven who it is: a guesser with a known
        // client's id cannot spend that client's allowance (per-address page and
        // device throttles, and the listener's limits, bound the rest).
        self.throttles().client.check(&client.client_id)?;
        Ok(client)
    }

    async fn verify_client(&self, auth: &ClientAuth) -> Result<Authenticated, OAuthError> {
        let client = self
            .store
            .client(auth.client_id())
            .await
            .map_err(storage_failure)?
            .ok_or_else(|| OAuthError::invalid_client("unknown client or bad credentials"))?;
        // RFC 8705 §2.1.2: a client registered for tls_client_auth proves
        // itself with its certificate, and only with it.
        if let Some(name) = &client.tls_client_auth_san_dns {
            let ClientAuth::TlsCertificate { certificate, .. } = auth else {
                return Err(OAuthError::invalid_client(
                    "client must authenticate with its TLS client certificate",
                ));
            };
            if !certificate.names(name) {
                return Err(OAuthError::invalid_client(
                    "the TLS client certificate is not the one registered for this client",
                ));
            }
            let binding = Some(certificate.thumbprint());
            return Ok(Authenticated { client, certificate_thumbprint: binding, dpop_jkt: None });
        }
        let client = Authenticated::from(client);
        // A client with keys authenticates with them, and only with them.
        if client.jwks.is_some() || matches!(auth, ClientAuth::PrivateKeyJwt { .. }) {
            let ClientAuth::PrivateKeyJwt { assertion, .. } = auth else {
                return Err(OAuthError::invalid_client(
                    "client must authenticate with private_key_jwt",
                ));
            };
            self.verify_client_assertion(&client, assertion.expose()).await?;
            return Ok(client);
        }
        match (&client.secret_hash, auth.secret()) {
            (Some(hash), Some(secret)) if secrets::verify_secret(secret.expose(), hash) => {
                Ok(client)
            }
            (Some(_), Some(_)) => {
                Err(OAuthError::invalid_client("unknown client or bad credentials"))
            }
            (Some(_), None) => Err(OAuthError::invalid_client("client authentication required")),
            (None, None) => Ok(client),
            (None, Some(_)) => {
                Err(OAuthError::invalid_client("public client must not send a secret"))
            }
        }
    }
}

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
    /// Kept as sent: only one string is accepted (see `verify_client_assertion`).
    aud: serde_json::Value,
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

impl<S: ClientStore> OAuthCore<S> {
    /// RFC 7523 §3: signature by one of the client's registered keys; `iss` and
    /// `sub` the client; `aud` this server's issuer identifier, as a single
    /// string and nothing else (the RFC 7523 update, draft-ietf-oauth-rfc7523bis
    /// §5: an assertion made for another server's token endpoint, or for several
    /// audiences, is what an audience-injection attack replays here);
    /// `exp` in the future and at most five minutes away; `iat` not in the
    /// future; `jti` never seen before from this client.
    async fn verify_client_assertion(
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
        // `aud` is checked below: the library accepts an array that contains
        // the value, and this server accepts only the one string.
        validation.validate_aud = false;
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

        if claims.aud.as_str() != Some(self.settings.issuer.as_str()) {
            return Err(OAuthError::invalid_client(
                "client assertion audience must be the issuer identifier alone",
            ));
        }
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

#[cfg(test)]
mod certificate_names {
    use super::PeerCertificate;

    fn certificate(names: &[&str]) -> PeerCertificate {
        let names = names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        let certified = rcgen::generate_simple_self_signed(names).expect("certificate");
        PeerCertificate::from_der(certified.cert.der())
    }

    #[test]
    fn the_registered_dns_name_must_be_one_of_the_certificates_own() {
        assert!(certificate(&["resource-server"]).names("resource-server"));
        // DNS names compare without regard to ASCII case (RFC 4343).
        assert!(certificate(&["Resource-Server"]).names("resource-server"));
        assert!(!certificate(&["notes-store"]).names("resource-server"));
        // RFC 8705 §2.1.2 matches the registered value itself: a wildcard
        // certificate does not stand for the names under it.
        assert!(!certificate(&["*.svc.example"]).names("notes.svc.example"));
        // Nor does an IP address entry for a DNS name.
        assert!(!certificate(&["127.0.0.1"]).names("127.0.0.1"));
    }
}

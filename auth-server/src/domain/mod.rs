//! The OAuth 2.0 protocol core: the token endpoint's one dispatch, and the
//! modules that own each part of the protocol.
//!
//! - [`client_auth`]: who the client is (secrets, `private_key_jwt`, public).
//! - [`grants`]: one module per grant, each bounded by the storage it needs.
//! - [`mint`]: the access JWT, refresh tokens and the token response.
//! - [`authorize`], [`consent`], [`owner`]: the authorization endpoint's request,
//!   remembered approvals, and the resource owner's sign-in.
//! - [`lifecycle`]: introspection (RFC 7662) and revocation (RFC 7009).
//! - [`keys`], [`pkce`], [`resource`], [`secrets`], [`model`]: the pieces.
//!
//! Knows nothing of HTTP, gRPC or SQL. The HTTP and gRPC adapters turn requests
//! into calls here and [`OAuthError`]s back into their wire forms; storage is
//! reached only through the traits in [`crate::storage`]; time comes from a
//! [`Clock`].

pub mod authorize;
pub mod client_auth;
pub mod consent;
pub mod dpop;
pub mod grants;
pub mod hashing;
pub mod keys;
pub mod lifecycle;
pub mod mint;
pub mod model;
pub mod owner;
pub mod pkce;
pub mod resource;
pub mod secrets;
pub mod throttle;

use std::sync::Arc;

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::{Clock, OAuthError, Secret, Verifier, VerifierConfig};

use crate::storage::{StorageError, Store};
use keys::KeyRing;
use model::GrantType;

pub use authorize::{AuthorizationRequest, AuthorizeError};
pub use client_auth::{Authenticated, ClientAuth, PeerCertificate};
pub use grants::exchange::ExchangeRequest;
pub use mint::TokenResponse;

/// Lifetimes and identity of the issued artefacts.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The issuer identifier (RFC 8414 §2), byte-for-byte the `iss` of every token.
    pub issuer: String,
    pub access_token_ttl_secs: i64,
    /// The trust domain of the Txn-Tokens this server issues (their `aud`).
    pub txn_trust_domain: String,
    /// Txn-Token lifetime; never beyond the token it was obtained with.
    pub txn_token_ttl_secs: i64,
    /// Idle lifetime: each refresh token expires this long after it is issued.
    pub refresh_token_ttl_secs: i64,
    /// Absolute lifetime: no refresh token outlives its grant's creation by
    /// more, however often it is rotated (RFC 9700 §4.14.2); then the owner
    /// signs in again.
    pub grant_max_lifetime_secs: i64,
    /// RFC 6749 §4.1.2 recommends at most ten minutes; we default to one.
    pub code_ttl_secs: i64,
    /// A spent refresh token presented again within this many seconds of its
    /// rotation is taken for a concurrent refresh by the rightful client and only
    /// refused; later, it is a replay and its whole grant is revoked
    /// (RFC 9700 §4.14.2).
    pub refresh_reuse_grace_secs: i64,
    /// RFC 8628 §3.2 `expires_in` of device codes.
    pub device_code_ttl_secs: i64,
    /// RFC 8628 §3.2 `interval`: the least seconds between polls.
    pub device_poll_interval_secs: i64,
    /// The bound on password hashing (sign-in pages).
    pub hash_limits: hashing::HashLimits,
    /// How often clients, addresses and account names may ask.
    pub throttles: throttle::ThrottleSettings,
    /// RFC 9449 §8: when set, every DPoP proof at the token endpoint must
    /// carry a current server nonce made with this key (`AUTH_DPOP_NONCE`).
    pub dpop_nonces: Option<dpop::NonceKey>,
    /// Device authorizations one client may have pending at once: each is a
    /// row written for an unauthenticated caller (a public client's id is all
    /// it takes).
    pub max_pending_device_codes: u64,
}

/// The most of a caller-chosen name (a typed username, an unknown client id)
/// that reaches a log line or a span (characters): the caller chose it, and it
/// must not grow the logs.
pub const MAX_LOGGED_CHARS: usize = 64;

/// `text`, cut at [`MAX_LOGGED_CHARS`] characters.
pub fn clipped(text: &str) -> &str {
    text.char_indices().nth(MAX_LOGGED_CHARS).map_or(text, |(end, _)| &text[..end])
}

/// The parameters the endpoints read. An error may name one of these; it never
/// echoes a name or value the caller sent: `error_description` goes back onto the
/// client's redirect and into its logs, and must stay within the RFC 6749 §4.1.2.1
/// character set (a request could otherwise place text on the client's page).
const KNOWN_PARAMETERS: &[&str] = &[
    "actor_token",
    "actor_token_type",
    "audience",
    "authz",
    "client_assertion",
    "client_assertion_type",
    "client_id",
    "client_secret",
    "code",
    "code_challenge",
    "code_challenge_method",
    "code_verifier",
    "csrf_token",
    "decision",
    "device_code",
    "grant_type",
    "password",
    "redirect_uri",
    "refresh_token",
    "request_context",
    "request_details",
    "requested_token_type",
    "resource",
    "response_type",
    "scope",
    "state",
    "subject_token",
    "subject_token_type",
    "token",
    "token_type_hint",
    "user_code",
    "username",
];

/// RFC 6749 §3.1, §3.2: a parameter sent more than once, named only if it is
/// one of ours.
pub fn repeated_parameter(name: &str) -> OAuthError {
    match KNOWN_PARAMETERS.iter().find(|known| **known == name) {
        Some(known) => OAuthError::invalid_request(format!("{known} was sent more than once")),
        None => OAuthError::invalid_request("a parameter was sent more than once"),
    }
}

/// A token request's grant (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode {
        code: Secret,
        redirect_uri: Option<String>,
        code_verifier: Option<Secret>,
        resource: Option<String>,
    },
    ClientCredentials {
        scope: Option<String>,
        resource: Option<String>,
    },
    RefreshToken {
        refresh_token: Secret,
        scope: Option<String>,
        resource: Option<String>,
    },
    TokenExchange(ExchangeRequest),
    DeviceCode {
        device_code: Secret,
    },
}

impl Grant {
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::AuthorizationCode { .. } => GrantType::AuthorizationCode,
            Self::ClientCredentials { .. } => GrantType::ClientCredentials,
            Self::RefreshToken { .. } => GrantType::RefreshToken,
            Self::TokenExchange(_) => GrantType::TokenExchange,
            Self::DeviceCode { .. } => GrantType::DeviceCode,
        }
    }
}

/// Logs a storage failure with its cause and turns it into what the caller may see.
pub(crate) fn storage_failure(err: StorageError) -> OAuthError {
    match err {
        StorageError::Unavailable(_) => {
            tracing::error!(error = %err, "storage unavailable");
            OAuthError::TemporarilyUnavailable("the server's storage is unavailable".into())
        }
        other => {
            tracing::error!(error = %other, "storage failure");
            OAuthError::ServerError
        }
    }
}

/// The protocol core. Cheap to clone.
#[derive(Debug)]
pub struct OAuthCore<S> {
    store: S,
    signer: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    settings: OAuthSettings,
    /// Recognises our own access tokens (with the key ring's parsed keys).
    own_tokens: Verifier,
    /// Every password check passes it.
    hashing: hashing::HashGate,
    throttles: throttle::Throttles,
    /// DPoP proofs at the token endpoint (RFC 9449 §5).
    dpop: dpop::DpopGate,
}

impl<S> OAuthCore<S> {
    pub fn new(
        store: S,
        signer: Arc<KeyRing>,
        clock: Arc<dyn Clock>,
        settings: OAuthSettings,
    ) -> Self {
        // No leeway: the issuer's own clock decides whether its token is current.
        let mut config = VerifierConfig::new(&settings.issuer, "");
        config.leeway_secs = 0;
        let own_tokens = Verifier::new(config);
        let hashing = hashing::HashGate::new(settings.hash_limits);
        let throttles = throttle::Throttles::new(&settings.throttles, &clock);
        let dpop = dpop::DpopGate::new(settings.dpop_nonces.clone());
        Self { store, signer, clock, settings, own_tokens, hashing, throttles, dpop }
    }

    /// DPoP at the token endpoint, also for the metadata.
    pub fn dpop(&self) -> &dpop::DpopGate {
        &self.dpop
    }

    /// The throttles, also for the per-address ones the HTTP pages apply.
    pub fn throttles(&self) -> &throttle::Throttles {
        &self.throttles
    }

    pub fn settings(&self) -> &OAuthSettings {
        &self.settings
    }

    pub fn signer(&self) -> &KeyRing {
        &self.signer
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

impl<S: Store> OAuthCore<S> {
    /// Deletes what expired more than `retention_secs` ago (see
    /// [`crate::storage::Housekeeping`]). The retention keeps spent codes and
    /// refresh tokens as evidence for a while after they expire, so that a late
    /// replay still revokes the grant (RFC 9700 §4.14.2, RFC 6749 §4.1.2).
    #[tracing::instrument(name = "housekeeping.purge", skip(self), err(Display))]
    pub async fn purge_expired(
        &self,
        retention_secs: i64,
    ) -> Result<crate::storage::Purged, StorageError> {
        let purged = self.store.purge_expired(self.clock.now() - retention_secs.max(0)).await?;
        if purged.total() > 0 {
            tracing::info!(?purged, "expired records purged");
        }
        Ok(purged)
    }

    /// The token endpoint (RFC 6749 §3.2): authenticates the client, then runs the
    /// grant. For a request without a DPoP proof.
    pub async fn token(
        &self,
        auth: &ClientAuth,
        grant: Grant,
    ) -> Result<TokenResponse, OAuthError> {
        self.token_with_proof(auth, grant, None).await
    }

    /// The token endpoint with the request's DPoP proof, if it carried one
    /// (RFC 9449 §5): the tokens are then bound to the proof's key.
    #[tracing::instrument(
        name = "oauth.token",
        skip_all,
        fields(
            otel.name = %format_args!("token {}", grant.grant_type()),
            client_id = %auth.logged_id(),
            grant_type = %grant.grant_type(),
            scope, subject, decision, reason,
        )
    )]
    pub async fn token_with_proof(
        &self,
        auth: &ClientAuth,
        grant: Grant,
        proof: Option<&dpop::PresentedProof>,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = grant.grant_type().to_string();
        let result = self.run_grant(auth, grant, proof).await;
        let span = tracing::Span::current();
        match &result {
            Ok(response) => {
                let scope = response.scope.to_string();
                span.record("decision", "issued").record("scope", scope.as_str());
                span.record("subject", response.subject.as_str());
                tollgate_telemetry::metrics::token_issued(&grant_type);
                audit::record(
                    Event::TokenIssued,
                    Subject {
                        subject: Some(&response.subject),
                        client_id: Some(auth.logged_id()),
                        grant_id: response.grant_id.as_deref(),
                        grant_type: Some(&grant_type),
                        scope: Some(&scope),
                        ..Subject::default()
                    },
                );
            }
            Err(err) => {
                span.record("decision", "refused").record("reason", err.code());
                tollgate_telemetry::metrics::token_refused(&grant_type, err.code());
                tracing::info!(error = err.code(), "token request refused");
            }
        }
        result
    }

    /// Authenticates the client and runs the grant (RFC 6749 §3.2, §4, §6).
    async fn run_grant(
        &self,
        auth: &ClientAuth,
        grant: Grant,
        proof: Option<&dpop::PresentedProof>,
    ) -> Result<TokenResponse, OAuthError> {
        let mut client = self.authenticate_client(auth).await?;
        if !client.may_use(grant.grant_type()) {
            return Err(OAuthError::unauthorized_client(format!(
                "client may not use the {} grant",
                grant.grant_type()
            )));
        }
        let now = self.clock.now();
        let proven = self.dpop.bound_key(&client, proof, now)?;
        client.dpop_jkt = proven.as_ref().map(|key| key.jkt.clone());
        let response = match grant {
            Grant::AuthorizationCode { code, redirect_uri, code_verifier, resource } => {
                self.authorization_code_grant(
                    &client,
                    &code,
                    redirect_uri.as_deref(),
                    code_verifier.as_ref(),
                    resource.as_deref(),
                )
                .await
            }
            Grant::ClientCredentials { scope, resource } => {
                self.client_credentials_grant(&client, scope.as_deref(), resource.as_deref())
            }
            Grant::RefreshToken { refresh_token, scope, resource } => {
                self.refresh_grant(&client, &refresh_token, scope.as_deref(), resource.as_deref())
                    .await
            }
            Grant::TokenExchange(request) => self.token_exchange_grant(&client, request).await,
            Grant::DeviceCode { device_code } => {
                self.device_code_grant(&client, &device_code).await
            }
        }?;
        if let Some(proven) = &proven {
            self.dpop.settle(proven, now)?;
        }
        Ok(response)
    }
}

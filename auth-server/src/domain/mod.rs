//! The OAuth 2.0 protocol core: grants, PKCE, codes, refresh-token rotation.
//!
//! Knows nothing of HTTP, gRPC or SQL. The HTTP and gRPC adapters turn requests
//! into calls here and [`OAuthError`]s back into their wire forms; storage is
//! reached only through the traits in [`crate::storage`]; time comes from a
//! [`Clock`].

pub mod assertion;
pub mod authorize;
pub mod consent;
pub mod device;
pub mod exchange;
pub mod keys;
pub mod lifecycle;
pub mod model;
pub mod pkce;
pub mod resource;
pub mod secrets;

use std::sync::Arc;

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::{
    AccessTokenClaims, Audience, Clock, OAuthError, Scope, Verifier, VerifierConfig,
};

use crate::storage::{RedeemOutcome, RotateOutcome, StorageError, Store};
use keys::KeyRing;
use model::{
    AuthorizationCode, Client, GrantRecord, GrantType, IssuedAccessToken, NewRefreshToken, User,
};

pub use authorize::{AuthorizationRequest, AuthorizeError};

/// Lifetimes and identity of the issued artefacts.
#[derive(Debug, Clone)]
pub struct OAuthSettings {
    /// The issuer identifier (RFC 8414 §2), byte-for-byte the `iss` of every token.
    pub issuer: String,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    /// RFC 6749 §4.1.2 recommends at most ten minutes; we default to one.
    pub code_ttl_secs: i64,
    /// A spent refresh token presented again within this many seconds of its
    /// rotation is taken for a concurrent refresh by the rightful client and only
    /// refused; later, it is a replay and its whole grant is revoked
    /// (RFC 9700 §4.14.2).
    pub refresh_reuse_grace_secs: i64,
    /// The token endpoint's URL: an accepted `aud` of client assertions.
    pub token_endpoint: String,
    /// RFC 8628 §3.2 `expires_in` of device codes.
    pub device_code_ttl_secs: i64,
    /// RFC 8628 §3.2 `interval`: the least seconds between polls.
    pub device_poll_interval_secs: i64,
}

/// How a client authenticated at the token endpoint (RFC 6749 §2.3).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic.
    SecretBasic { client_id: String, secret: String },
    /// `client_secret_post`: in the form body.
    SecretPost { client_id: String, secret: String },
    /// `private_key_jwt` (RFC 7523 §2.2): a JWT signed with the client's key.
    PrivateKeyJwt { client_id: String, assertion: String },
    /// A public client: only its id (`none`).
    None { client_id: String },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (method, id) = match self {
            Self::SecretBasic { client_id, .. } => ("client_secret_basic", client_id),
            Self::SecretPost { client_id, .. } => ("client_secret_post", client_id),
            Self::PrivateKeyJwt { client_id, .. } => ("private_key_jwt", client_id),
            Self::None { client_id } => ("none", client_id),
        };
        f.debug_struct("ClientAuth").field("method", &method).field("client_id", id).finish()
    }
}

impl ClientAuth {
    pub fn client_id(&self) -> &str {
        match self {
            Self::SecretBasic { client_id, .. }
            | Self::SecretPost { client_id, .. }
            | Self::PrivateKeyJwt { client_id, .. }
            | Self::None { client_id } => client_id,
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Self::SecretBasic { secret, .. } | Self::SecretPost { secret, .. } => Some(secret),
            Self::PrivateKeyJwt { .. } | Self::None { .. } => None,
        }
    }
}

/// A token request's grant (RFC 6749 §4.1.3, §4.4.2, §6).
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode {
        code: String,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        resource: Option<String>,
    },
    ClientCredentials {
        scope: Option<String>,
        resource: Option<String>,
    },
    RefreshToken {
        refresh_token: String,
        scope: Option<String>,
        resource: Option<String>,
    },
    TokenExchange(exchange::ExchangeRequest),
    DeviceCode {
        device_code: String,
    },
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.grant_type().as_str())
    }
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

/// A successful token response (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
    /// Always sent, so the client knows what it got (RFC 6749 §3.3).
    pub scope: Scope,
    /// RFC 8693 §2.2.1, for token exchange only.
    pub issued_token_type: Option<&'static str>,
    /// Who the token is for (`sub`), and the grant it belongs to: for the audit
    /// trail and spans, never sent to the client.
    pub subject: String,
    pub grant_id: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope.to_string())
            .finish_non_exhaustive()
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
}

impl<S: Store> OAuthCore<S> {
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
        Self { store, signer, clock, settings, own_tokens }
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

    /// RFC 6749 §2.3 and §3.2.1: identifies and authenticates the client. A
    /// confidential client must prove its secret; a public client must not
    /// present one.
    #[tracing::instrument(skip_all, fields(client_id = %auth.client_id()))]
    pub async fn authenticate_client(&self, auth: &ClientAuth) -> Result<Client, OAuthError> {
        let client = self
            .store
            .client(auth.client_id())
            .await
            .map_err(storage_failure)?
            .ok_or_else(|| OAuthError::invalid_client("unknown client or bad credentials"))?;
        // A client with keys authenticates with them, and only with them.
        if client.jwks.is_some() || matches!(auth, ClientAuth::PrivateKeyJwt { .. }) {
            let ClientAuth::PrivateKeyJwt { assertion, .. } = auth else {
                return Err(OAuthError::invalid_client(
                    "client must authenticate with private_key_jwt",
                ));
            };
            self.verify_client_assertion(&client, assertion).await?;
            return Ok(client);
        }
        match (&client.secret_hash, auth.secret()) {
            (Some(hash), Some(secret)) if secrets::verify_secret(secret, hash) => Ok(client),
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

    /// Checks a resource owner's credentials. Unknown user and wrong password take
    /// the same time and give the same answer.
    pub async fn authenticate_user(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<User>, OAuthError> {
        let user = self.store.user_by_username(username).await.map_err(storage_failure)?;
        let ok = secrets::verify_password(
            password.to_owned(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
        Ok(user.filter(|_| ok))
    }

    /// RFC 6749 §4.1.2: issues a single-use, short-lived code bound to the client,
    /// the redirect URI, the subject, the scope and the PKCE challenge.
    pub async fn issue_code(
        &self,
        request: &AuthorizationRequest,
        subject: &str,
    ) -> Result<String, OAuthError> {
        let code = secrets::generate_secret();
        let now = self.clock.now();
        self.store
            .insert_code(&AuthorizationCode {
                code_hash: secrets::hash_secret(&code),
                client_id: request.client.client_id.clone(),
                subject: subject.to_owned(),
                redirect_uri: request.redirect_uri.clone(),
                scope: request.scope.clone(),
                code_challenge: request.code_challenge.clone(),
                issued_at: now,
                expires_at: now + self.settings.code_ttl_secs,
                audience: request.audience.clone(),
            })
            .await
            .map_err(storage_failure)?;
        Ok(code)
    }

    /// The token endpoint (RFC 6749 §3.2): authenticates the client, then runs the
    /// grant.
    #[tracing::instrument(
        name = "oauth.token",
        skip_all,
        fields(
            otel.name = %format_args!("token {}", grant.grant_type()),
            client_id = %auth.client_id(),
            grant_type = %grant.grant_type(),
            scope, subject, decision, reason,
        )
    )]
    pub async fn token(
        &self,
        auth: &ClientAuth,
        grant: Grant,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = grant.grant_type().to_string();
        let result = self.run_grant(auth, grant).await;
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
                        client_id: Some(auth.client_id()),
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
    ) -> Result<TokenResponse, OAuthError> {
        let client = self.authenticate_client(auth).await?;
        if !client.may_use(grant.grant_type()) {
            return Err(OAuthError::unauthorized_client(format!(
                "client may not use the {} grant",
                grant.grant_type()
            )));
        }
        match grant {
            Grant::AuthorizationCode { code, redirect_uri, code_verifier, resource } => {
                self.authorization_code(&client, &code, redirect_uri, code_verifier, resource).await
            }
            Grant::ClientCredentials { scope, resource } => {
                self.client_credentials(&client, scope, resource)
            }
            Grant::RefreshToken { refresh_token, scope, resource } => {
                self.refresh(&client, &refresh_token, scope, resource).await
            }
            Grant::TokenExchange(request) => self.token_exchange(&client, request).await,
            Grant::DeviceCode { device_code } => {
                self.device_code_grant(&client, &device_code).await
            }
        }
    }

    /// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6).
    async fn authorization_code(
        &self,
        client: &Client,
        code: &str,
        redirect_uri: Option<String>,
        code_verifier: Option<String>,
        resource: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let code_hash = secrets::hash_secret(code);
        let spent =
            || OAuthError::invalid_grant("authorization code is invalid, expired or already used");
        // Spend the code first: whatever follows, it can never be used again.
        let stored = match self.store.redeem_code(&code_hash, now).await.map_err(storage_failure)? {
            RedeemOutcome::Redeemed(code) => code,
            RedeemOutcome::Replayed { grant_id } => {
                // RFC 6749 §4.1.2: a code used twice may have been stolen; the
                // tokens issued from it are revoked (or the grant is born revoked
                // if it is still being written, see the store).
                audit::record(
                    Event::CodeReplayDetected,
                    Subject {
                        client_id: Some(&client.client_id),
                        grant_id: grant_id.as_deref(),
                        reason: Some("the code was redeemed before; its tokens are revoked"),
                        ..Subject::default()
                    },
                );
                if let Some(grant_id) = grant_id {
                    self.store.revoke_grant(&grant_id, now).await.map_err(storage_failure)?;
                }
                return Err(spent());
            }
            RedeemOutcome::Invalid => return Err(spent()),
        };
        if stored.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "authorization code was issued to another client",
            ));
        }
        // RFC 6749 §4.1.3: the redirect_uri must be identical to the authorization
        // request's.
        if redirect_uri.as_deref() != Some(stored.redirect_uri.as_str()) {
            return Err(OAuthError::invalid_grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier = code_verifier
            .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
        if !pkce::verify(&verifier, &stored.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        resource::check_same_resource(resource.as_deref(), &stored.audience)?;
        let grant = GrantRecord {
            grant_id: secrets::generate_secret(),
            client_id: client.client_id.clone(),
            subject: stored.subject.clone(),
            scope: stored.scope.clone(),
            audience: stored.audience.clone(),
            created_at: now,
        };
        self.issue_for_grant(client, grant, Some(&code_hash)).await
    }

    /// Writes a new grant with its first refresh and access tokens, and returns
    /// them. For a grant born of a code that was replayed meanwhile, nothing is
    /// handed out.
    async fn issue_for_grant(
        &self,
        client: &Client,
        grant: GrantRecord,
        from_code_hash: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = grant.created_at;
        let (refresh_token, refresh_record) = self.new_refresh_token(client, &grant, now);
        let access = self.new_access_token(now);
        let access_token =
            self.mint(client, &grant.subject, &grant.audience, &grant.scope, &access, None)?;
        let live = self
            .store
            .create_grant(&grant, refresh_record.as_ref(), &access, from_code_hash)
            .await
            .map_err(storage_failure)?;
        if !live {
            tracing::warn!(client_id = %client.client_id, "authorization code replayed during redemption");
            return Err(OAuthError::invalid_grant(
                "authorization code is invalid, expired or already used",
            ));
        }
        Ok(TokenResponse {
            access_token,
            expires_in: self.settings.access_token_ttl_secs,
            refresh_token,
            scope: grant.scope,
            issued_token_type: None,
            subject: grant.subject,
            grant_id: Some(grant.grant_id),
        })
    }

    /// RFC 6749 §4.4: the client acts for itself, so `sub` is its id (RFC 9068
    /// §2.2) and no refresh token is issued (§4.4.3). No database write.
    fn client_credentials(
        &self,
        client: &Client,
        scope: Option<String>,
        resource: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::unauthorized_client(
                "a public client cannot use client_credentials",
            ));
        }
        let scope = requested_scope(scope.as_deref(), &client.scope)?;
        let now = self.clock.now();
        let access = self.new_access_token(now);
        // RFC 8707: the named resource, or the client's default audience.
        let audience = resource::audience_for(client, resource.as_deref())?;
        let access_token =
            self.mint(client, &client.client_id, &audience, &scope, &access, None)?;
        Ok(TokenResponse {
            access_token,
            expires_in: self.settings.access_token_ttl_secs,
            refresh_token: None,
            scope,
            issued_token_type: None,
            subject: client.client_id.clone(),
            grant_id: None,
        })
    }

    /// RFC 6749 §6 with rotation (RFC 9700 §4.14.2): the presented refresh token is
    /// spent and a new one issued; the scope may be narrowed, never widened.
    async fn refresh(
        &self,
        client: &Client,
        refresh_token: &str,
        scope: Option<String>,
        resource: Option<String>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let token_hash = secrets::hash_secret(refresh_token);
        // RFC 8707 §2.2: a resource other than the grant's is refused before the
        // token is spent, so the client keeps it.
        if let Some(resource) = &resource
            && let Some(record) =
                self.store.refresh_token(&token_hash).await.map_err(storage_failure)?
            && record.client_id == client.client_id
        {
            resource::check_same_resource(Some(resource), &record.grant.audience)?;
        }
        let next_token = secrets::generate_secret();
        let next = NewRefreshToken {
            token_hash: secrets::hash_secret(&next_token),
            grant_id: String::new(), // the store fills in the spent token's grant
            client_id: client.client_id.clone(),
            scope: Scope::default(),
            issued_at: now,
            expires_at: now + self.settings.refresh_token_ttl_secs,
        };
        let narrowed = match scope.as_deref() {
            Some(raw) => {
                Some(Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string()))?)
            }
            None => None,
        };
        let access = self.new_access_token(now);
        let outcome = self
            .store
            .rotate_refresh_token(
                &token_hash,
                &client.client_id,
                now,
                narrowed.as_ref(),
                &next,
                &access,
            )
            .await
            .map_err(storage_failure)?;
        let invalid = || {
            OAuthError::invalid_grant("refresh token is invalid, expired, revoked or already used")
        };
        let rotated = match outcome {
            RotateOutcome::Rotated(rotated) => rotated,
            RotateOutcome::Invalid => return Err(invalid()),
            RotateOutcome::Reused { grant_id, used_at } => {
                if now - used_at > self.settings.refresh_reuse_grace_secs {
                    // RFC 9700 §4.14.2: either the client or an attacker holds a
                    // stolen token; the server cannot tell which, so the whole
                    // family goes.
                    audit::record(
                        Event::RefreshReuseDetected,
                        Subject {
                            client_id: Some(&client.client_id),
                            grant_id: Some(&grant_id),
                            reason: Some(
                                "a spent refresh token was presented; the grant is revoked",
                            ),
                            ..Subject::default()
                        },
                    );
                    self.store.revoke_grant(&grant_id, now).await.map_err(storage_failure)?;
                }
                return Err(invalid());
            }
            // RFC 6749 §6: the scope may not include anything not originally
            // granted. Nothing was spent, so the client keeps its refresh token.
            RotateOutcome::ScopeExceeded => {
                return Err(OAuthError::invalid_scope("scope exceeds the original grant"));
            }
        };
        let scope = narrowed.unwrap_or_else(|| rotated.scope.clone());
        // The grant's audience, as recorded when the owner consented: a later
        // change to the client's registration does not retarget old grants.
        let access_token = self.mint(
            client,
            &rotated.grant.subject,
            &rotated.grant.audience,
            &scope,
            &access,
            None,
        )?;
        Ok(TokenResponse {
            access_token,
            expires_in: self.settings.access_token_ttl_secs,
            refresh_token: Some(next_token),
            scope,
            issued_token_type: None,
            subject: rotated.grant.subject.clone(),
            grant_id: Some(rotated.grant.grant_id.clone()),
        })
    }

    fn new_refresh_token(
        &self,
        client: &Client,
        grant: &GrantRecord,
        now: i64,
    ) -> (Option<String>, Option<NewRefreshToken>) {
        if !client.may_use(GrantType::RefreshToken) {
            return (None, None);
        }
        let token = secrets::generate_secret();
        let record = NewRefreshToken {
            token_hash: secrets::hash_secret(&token),
            grant_id: grant.grant_id.clone(),
            client_id: client.client_id.clone(),
            scope: grant.scope.clone(),
            issued_at: now,
            expires_at: now + self.settings.refresh_token_ttl_secs,
        };
        (Some(token), Some(record))
    }

    /// The identity and lifetime of the next access token, fixed before it is
    /// recorded and signed.
    fn new_access_token(&self, now: i64) -> IssuedAccessToken {
        let mut jti = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jti);
        IssuedAccessToken {
            jti: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jti),
            issued_at: now,
            expires_at: now + self.settings.access_token_ttl_secs,
        }
    }

    /// Signs an RFC 9068 access token.
    fn mint(
        &self,
        client: &Client,
        subject: &str,
        audience: &str,
        scope: &Scope,
        access: &IssuedAccessToken,
        act: Option<tollgate_token::Actor>,
    ) -> Result<String, OAuthError> {
        let now = access.issued_at;
        let claims = AccessTokenClaims {
            iss: self.settings.issuer.clone(),
            sub: subject.to_owned(),
            aud: Audience::One(audience.to_owned()),
            exp: access.expires_at,
            iat: now,
            nbf: Some(now),
            jti: access.jti.clone(),
            client_id: client.client_id.clone(),
            scope: (!scope.is_empty()).then(|| scope.to_string()),
            act,
        };
        self.signer.sign(&claims, now).map_err(|err| {
            tracing::error!(error = %err, "signing failed");
            OAuthError::ServerError
        })
    }
}

/// RFC 6749 §3.3: an absent scope means the client's registered scopes; a present
/// one must be within them.
pub(crate) fn requested_scope(raw: Option<&str>, allowed: &Scope) -> Result<Scope, OAuthError> {
    let Some(raw) = raw else { return Ok(allowed.clone()) };
    let asked = Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    if let Some(extra) = asked.not_in(allowed).next() {
        return Err(OAuthError::invalid_scope(format!(
            "scope {extra} is not allowed for this client"
        )));
    }
    if asked.is_empty() {
        return Err(OAuthError::invalid_scope("scope is empty"));
    }
    Ok(asked)
}

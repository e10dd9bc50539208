//! Token exchange (RFC 8693): a service that received a user's access token gets
//! a narrower one for a service behind it, carrying the user as `sub` and itself
//! as `act`, so each hop knows both who the request is for and who is calling.

use tollgate_token::{AccessTokenClaims, Actor, OAuthError, Scope};

use super::model::{ACCESS_TOKEN_TYPE, Client};
use super::{OAuthCore, TokenResponse, storage_failure};
use crate::storage::Store;

/// The parameters of an exchange request (RFC 8693 §2.1).
#[derive(Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    pub subject_token: String,
    pub subject_token_type: String,
    /// The target service, as a logical name (`audience`) or URI (`resource`,
    /// RFC 8707); either names the `aud` of the issued token.
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor_token: Option<String>,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl<S: Store> OAuthCore<S> {
    /// RFC 8693 §2: issues a token for `audience`, for the subject of the
    /// presented token, acting as `client`. Policy:
    /// - only a confidential client registered for token exchange, and only for
    ///   the audiences it is registered for (`invalid_target` otherwise);
    /// - only a token that was presented to the client (its `aud` names the
    ///   client), still valid and not revoked: a client cannot exchange tokens it
    ///   merely got hold of;
    /// - the scope can only narrow; the lifetime never outlasts the subject token.
    pub(super) async fn token_exchange(
        &self,
        client: &Client,
        request: ExchangeRequest,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::unauthorized_client("a public client cannot exchange tokens"));
        }
        // RFC 8693 §2.2.2: what the server will not do is invalid_request.
        if request.actor_token.is_some() {
            return Err(OAuthError::invalid_request("actor_token is not supported"));
        }
        if request.subject_token_type != ACCESS_TOKEN_TYPE {
            return Err(OAuthError::invalid_request(format!(
                "subject_token_type must be {ACCESS_TOKEN_TYPE}"
            )));
        }
        if request.requested_token_type.as_deref().is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type must be {ACCESS_TOKEN_TYPE}"
            )));
        }
        let target = match (&request.audience, &request.resource) {
            (Some(a), Some(r)) if a != r => {
                return Err(OAuthError::invalid_request("audience and resource disagree"));
            }
            (Some(t), _) | (None, Some(t)) => t.clone(),
            (None, None) => return Err(OAuthError::invalid_request("audience is required")),
        };
        if !client.exchange_audiences.contains(&target) {
            return Err(OAuthError::invalid_target(format!(
                "this client may not obtain tokens for {target}"
            )));
        }

        let now = self.clock.now();
        let keys = self.signer.verification_keys();
        let subject: AccessTokenClaims = self
            .own_tokens
            .verify_any_audience(&keys, &request.subject_token, now)
            .map_err(|_| OAuthError::invalid_request("subject_token is invalid or expired"))?;
        if self.store.is_access_token_revoked(&subject.jti).await.map_err(storage_failure)? {
            return Err(OAuthError::invalid_request("subject_token is revoked"));
        }
        if !subject.aud.contains(&client.client_id) {
            return Err(OAuthError::invalid_request(
                "subject_token was not issued for this client",
            ));
        }
        let granted = Scope::parse(subject.scope.as_deref().unwrap_or(""))
            .map_err(|_| OAuthError::invalid_request("subject_token has a malformed scope"))?;
        let scope = match request.scope.as_deref() {
            None => granted,
            Some(raw) => {
                let asked =
                    Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
                if asked.is_empty() || !asked.is_subset(&granted) {
                    return Err(OAuthError::invalid_scope(
                        "scope exceeds what the subject_token grants",
                    ));
                }
                asked
            }
        };

        let mut access = self.new_access_token(now);
        access.expires_at = access.expires_at.min(subject.exp);
        self.store.record_derived_token(&subject.jti, &access).await.map_err(storage_failure)?;
        // RFC 8693 §4.1: the acting party now, with the earlier chain nested.
        let act = Actor { sub: client.client_id.clone(), act: subject.act.map(Box::new) };
        let access_token = self.mint(client, &subject.sub, &target, &scope, &access, Some(act))?;
        tracing::info!(
            client_id = %client.client_id, subject = %subject.sub, audience = %target, scope = %scope,
            "token exchanged"
        );
        Ok(TokenResponse {
            access_token,
            expires_in: access.expires_at - now,
            refresh_token: None,
            scope,
            issued_token_type: Some(ACCESS_TOKEN_TYPE),
            subject: subject.sub,
            grant_id: None,
        })
    }
}

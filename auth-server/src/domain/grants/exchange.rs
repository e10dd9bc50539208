//! Token exchange (RFC 8693): a service that received a user's access token gets
//! a narrower one for a service behind it, carrying the user as `sub` and itself
//! as `act`, so each hop knows both who the request is for and who is calling.

use crate::domain::client_auth::Authenticated;
use crate::domain::mint::TokenType;
use tollgate_token::{AccessTokenClaims, Actor, OAuthError, Scope, Secret};

use crate::domain::model::ACCESS_TOKEN_TYPE;
use crate::domain::{OAuthCore, TokenResponse, storage_failure};
use crate::storage::RevocationStore;
use tollgate_token::TXN_TOKEN_TYPE;

/// The parameters of an exchange request (RFC 8693 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeRequest {
    pub subject_token: Secret,
    pub subject_token_type: String,
    /// The target service, as a logical name (`audience`) or URI (`resource`,
    /// RFC 8707); either names the `aud` of the issued token.
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scope: Option<String>,
    pub requested_token_type: Option<String>,
    pub actor_token: Option<Secret>,
    /// For a Txn-Token only (draft-ietf-oauth-transaction-tokens §"Txn-Token
    /// Request"): JSON objects, the request's environment and its details.
    pub request_context: Option<String>,
    pub request_details: Option<String>,
}

impl<S: RevocationStore> OAuthCore<S> {
    /// The subject token of an exchange (an access token or a Txn-Token
    /// request): one this server issued, still valid and not revoked, and
    /// presented to `client` (its `aud` names the client): a client cannot
    /// exchange a token it merely got hold of.
    pub(in crate::domain) async fn presented_subject_token(
        &self,
        client: &Authenticated,
        token: &Secret,
        now: i64,
    ) -> Result<AccessTokenClaims, OAuthError> {
        let keys = self.signer.verification_keys(now);
        let subject: AccessTokenClaims = self
            .own_tokens
            .verify_any_audience(&keys, token.expose(), now)
            .map_err(|_| OAuthError::invalid_request("subject_token is invalid or expired"))?;
        if self.store.is_access_token_revoked(&subject.jti).await.map_err(storage_failure)? {
            return Err(OAuthError::invalid_request("subject_token is revoked"));
        }
        if !subject.aud.contains(&client.client_id) {
            return Err(OAuthError::invalid_request(
                "subject_token was not issued for this client",
            ));
        }
        Ok(subject)
    }

    /// RFC 8693 §2: issues a token for `audience`, for the subject of the
    /// presented token, acting as `client`. Policy:
    /// - only a confidential client registered for token exchange, and only for
    ///   the audiences it is registered for (`invalid_target` otherwise);
    /// - only a token that was presented to the client (its `aud` names the
    ///   client), still valid and not revoked: a client cannot exchange tokens it
    ///   merely got hold of;
    /// - the scope can only narrow, within both the subject token's scope and the
    ///   client's registered scopes; the lifetime never outlasts the subject
    ///   token.
    pub(in crate::domain) async fn token_exchange_grant(
        &self,
        client: &Authenticated,
        request: ExchangeRequest,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::unauthorized_client("a public client cannot exchange tokens"));
        }
        // RFC 8693 §2.2.2: what the server will not do is invalid_request.
        if request.actor_token.is_some() {
            return Err(OAuthError::invalid_request("actor_token is not supported"));
        }
        if request.requested_token_type.as_deref() == Some(TXN_TOKEN_TYPE) {
            return self.txn_token_grant(client, request).await;
        }
        if request.request_context.is_some() || request.request_details.is_some() {
            return Err(OAuthError::invalid_request(
                "request_context and request_details are for Txn-Token requests only",
            ));
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
        // The trust domain is where Txn-Tokens are valid, not a service an
        // access token could be for.
        if target == self.settings.txn_trust_domain {
            return Err(OAuthError::invalid_target(
                "the trust domain takes Txn-Tokens: ask with requested_token_type \
                 urn:ietf:params:oauth:token-type:txn_token",
            ));
        }
        if !client.exchange_audiences.contains(&target) {
            return Err(OAuthError::invalid_target(
                "this client may not obtain tokens for this audience",
            ));
        }

        let now = self.clock.now();
        let subject = self.presented_subject_token(client, &request.subject_token, now).await?;
        let granted = Scope::parse(subject.scope.as_deref().unwrap_or(""))
            .map_err(|_| OAuthError::invalid_request("subject_token has a malformed scope"))?;
        // Two bounds (RFC 8693 §2.1 leaves the policy to the server): what the
        // user granted (the subject token's scope) and what this client is
        // registered for. A client exchanging a broad token gets no scope it
        // could not have been given itself.
        let scope = match request.scope.as_deref() {
            None => {
                let allowed =
                    Scope::from_tokens(granted.iter().filter(|s| client.scope.contains(s)));
                if allowed.is_empty() {
                    return Err(OAuthError::invalid_scope(
                        "the subject_token grants no scope this client is registered for",
                    ));
                }
                allowed
            }
            Some(raw) => {
                let asked =
                    Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
                if asked.is_empty() || !asked.is_subset(&granted) {
                    return Err(OAuthError::invalid_scope(
                        "scope exceeds what the subject_token grants",
                    ));
                }
                if !asked.is_subset(&client.scope) {
                    return Err(OAuthError::invalid_scope(
                        "scope exceeds what this client is registered for",
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
            token_type: TokenType::of(client),
            subject: subject.sub,
            grant_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use tollgate_token::{AccessTokenClaims, Clock as _, Scope, Secret};

    use super::*;
    use crate::domain::Grant;
    use crate::domain::grants::testing::{Fixture, SUBJECT, auth};
    use crate::domain::model::GrantType::TokenExchange;

    const NOTES: &str = "tollgate-notes-store";
    const RS: &str = "tollgate-resource";

    /// A user's token for the resource server (`aud` = its client id), and the
    /// resource server registered for exchange to the notes store.
    async fn users_token(fx: &Fixture) -> Secret {
        fx.client(RS, Some("s3cret"), &[TokenExchange]).await;
        fx.users_token_for(RS).await
    }

    fn exchange(subject_token: &Secret, audience: &str, scope: Option<&str>) -> Grant {
        Grant::TokenExchange(ExchangeRequest {
            subject_token: subject_token.clone(),
            subject_token_type: ACCESS_TOKEN_TYPE.into(),
            audience: Some(audience.into()),
            resource: None,
            scope: scope.map(str::to_owned),
            requested_token_type: None,
            actor_token: None,
            request_context: None,
            request_details: None,
        })
    }

    fn claims(fx: &Fixture, token: &Secret) -> AccessTokenClaims {
        let keys = fx.core.signer().verification_keys(fx.clock.now());
        fx.core.own_tokens.verify_any_audience(&keys, token.expose(), fx.clock.now()).expect("ours")
    }

    async fn refused(fx: &Fixture, client: &str, grant: Grant) -> (&'static str, String) {
        let err = fx.core.token(&auth(client, Some("s3cret")), grant).await.expect_err("refused");
        (err.code(), err.description().to_owned())
    }

    #[tokio::test]
    async fn the_exchanged_token_names_the_user_the_actor_and_the_target() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        fx.advance(100);
        let exchanged = fx
            .core
            .token(&auth(RS, Some("s3cret")), exchange(&user, NOTES, Some("notes:read")))
            .await
            .expect("exchanged");
        assert_eq!(exchanged.issued_token_type, Some(ACCESS_TOKEN_TYPE));
        let (subject, token) = (claims(&fx, &user), claims(&fx, &exchanged.access_token));
        assert_eq!(token.sub, SUBJECT);
        assert!(token.aud.contains(NOTES) && !token.aud.contains(RS));
        assert_eq!(token.act.map(|act| act.sub).as_deref(), Some(RS));
        assert_eq!(token.scope.as_deref(), Some("notes:read"));
        // Never outlives the token it was exchanged from.
        assert_eq!(token.exp, subject.exp);
        assert_eq!(exchanged.expires_in, subject.exp - fx.clock.now());
    }

    #[tokio::test]
    async fn only_for_registered_audiences_and_within_the_scope() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        assert_eq!(
            refused(&fx, RS, exchange(&user, "billing", None)).await,
            ("invalid_target", "this client may not obtain tokens for this audience".into())
        );
        assert_eq!(
            refused(&fx, RS, exchange(&user, NOTES, Some("notes:read admin"))).await,
            ("invalid_scope", "scope exceeds what the subject_token grants".into())
        );
    }

    #[tokio::test]
    async fn the_result_is_bounded_by_the_clients_registered_scopes_too() {
        use crate::storage::ClientStore as _;
        let fx = Fixture::new().await;
        let user = users_token(&fx).await; // notes:read notes:write
        let mut rs = fx.client(RS, Some("s3cret"), &[TokenExchange]).await;
        rs.scope = Scope::parse("notes:read").expect("scope");
        fx.core.store().upsert_client(&rs, fx.clock.now()).await.expect("narrowed");
        assert_eq!(
            refused(&fx, RS, exchange(&user, NOTES, Some("notes:write"))).await,
            ("invalid_scope", "scope exceeds what this client is registered for".into())
        );
        let narrowed = fx.core.token(&auth(RS, Some("s3cret")), exchange(&user, NOTES, None)).await;
        assert_eq!(narrowed.expect("exchanged").scope.to_string(), "notes:read");
        rs.scope = Scope::default();
        fx.core.store().upsert_client(&rs, fx.clock.now()).await.expect("emptied");
        assert_eq!(
            refused(&fx, RS, exchange(&user, NOTES, None)).await,
            (
                "invalid_scope",
                "the subject_token grants no scope this client is registered for".into()
            )
        );
    }

    #[tokio::test]
    async fn only_the_audience_of_the_subject_token_may_exchange_it() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        fx.client("other", Some("s3cret"), &[TokenExchange]).await;
        assert_eq!(
            refused(&fx, "other", exchange(&user, NOTES, None)).await,
            ("invalid_request", "subject_token was not issued for this client".into())
        );
        fx.client("public", None, &[TokenExchange]).await;
        let err = fx.core.token(&auth("public", None), exchange(&user, NOTES, None)).await;
        assert_eq!(
            err.map_err(|e| (e.code(), e.description().to_owned())).expect_err("refused"),
            ("unauthorized_client", "a public client cannot exchange tokens".into())
        );
    }

    #[tokio::test]
    async fn the_trust_domain_is_no_audience_for_an_access_token() {
        use crate::storage::ClientStore as _;
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        let mut rs = fx.client(RS, Some("s3cret"), &[TokenExchange]).await;
        rs.exchange_audiences.push("tollgate.internal".into());
        fx.core.store().upsert_client(&rs, fx.clock.now()).await.expect("registered");
        assert_eq!(
            refused(&fx, RS, exchange(&user, "tollgate.internal", None)).await,
            (
                "invalid_target",
                "the trust domain takes Txn-Tokens: ask with requested_token_type \
                 urn:ietf:params:oauth:token-type:txn_token"
                    .into()
            )
        );
    }

    #[tokio::test]
    async fn a_revoked_subject_token_is_refused() {
        let fx = Fixture::new().await;
        let user = users_token(&fx).await;
        let jti = claims(&fx, &user).jti;
        fx.core
            .store()
            .revoke_access_token(&jti, fx.clock.now() + 300, fx.clock.now())
            .await
            .expect("revoked");
        assert_eq!(
            refused(&fx, RS, exchange(&user, NOTES, None)).await,
            ("invalid_request", "subject_token is revoked".into())
        );
    }
}

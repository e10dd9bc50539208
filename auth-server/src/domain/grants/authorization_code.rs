//! The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636): the code
//! issued when the resource owner approves, and its redemption at the token
//! endpoint.

use crate::domain::client_auth::Authenticated;
use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::{OAuthError, Secret};

use crate::domain::model::{AuthorizationCode, GrantRecord};
use crate::domain::{
    AuthorizationRequest, OAuthCore, TokenResponse, pkce, resource, secrets, storage_failure,
};
use crate::storage::{CodeStore, ExchangeOutcome, GrantStore, NewGrant};

const SPENT: &str = "authorization code is invalid, expired or already used";

impl<S: CodeStore> OAuthCore<S> {
    /// RFC 6749 §4.1.2: issues a single-use, short-lived code bound to the client,
    /// the redirect URI, the subject, the scope and the PKCE challenge. Only its
    /// hash is stored.
    pub async fn issue_code(
        &self,
        request: &AuthorizationRequest,
        subject: &str,
    ) -> Result<Secret, OAuthError> {
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
        Ok(Secret::new(code))
    }
}

impl<S: CodeStore + GrantStore> OAuthCore<S> {
    /// RFC 6749 §4.1.3 with PKCE (RFC 7636 §4.6), in one transaction: the code
    /// is spent, checked against the client, the redirect URI, the verifier
    /// and the resource, and its grant written with the first tokens. A code
    /// that fails a check stays spent.
    pub(in crate::domain) async fn authorization_code_grant(
        &self,
        client: &Authenticated,
        code: &Secret,
        redirect_uri: Option<&str>,
        code_verifier: Option<&Secret>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let code_hash = secrets::hash_secret(code.expose());
        let exchange = |stored: &AuthorizationCode| {
            check_redemption(stored, client, redirect_uri, code_verifier, resource)?;
            let grant = GrantRecord {
                grant_id: secrets::generate_secret(),
                client_id: client.client_id.clone(),
                subject: stored.subject.clone(),
                scope: stored.scope.clone(),
                audience: stored.audience.clone(),
                created_at: now,
                // RFC 9449 §5: a public client's refresh tokens are bound to
                // the DPoP key this request proved, if any.
                dpop_jkt: client.dpop_jkt.clone().filter(|_| client.is_public()),
            };
            // Signed inside the transaction: a token that cannot be made
            // leaves no grant behind.
            let (tokens, refresh, access) = self.first_tokens(client, &grant)?;
            Ok((NewGrant { grant, refresh, access }, tokens))
        };
        match self.store.exchange_code(&code_hash, now, exchange).await.map_err(storage_failure)? {
            ExchangeOutcome::Exchanged(tokens) => Ok(tokens),
            ExchangeOutcome::Refused(refusal) => Err(refusal),
            ExchangeOutcome::Replayed { grant_id } => {
                // RFC 6749 §4.1.2: a code used twice may have been stolen; the
                // tokens issued from it are revoked.
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
                Err(OAuthError::invalid_grant(SPENT))
            }
            ExchangeOutcome::Invalid => Err(OAuthError::invalid_grant(SPENT)),
        }
    }
}

/// RFC 6749 §4.1.3 and RFC 7636 §4.6: the spent code was issued to this client,
/// for this redirect URI, with a challenge this verifier answers, for this
/// resource.
fn check_redemption(
    stored: &AuthorizationCode,
    client: &Authenticated,
    redirect_uri: Option<&str>,
    code_verifier: Option<&Secret>,
    resource: Option<&str>,
) -> Result<(), OAuthError> {
    if stored.client_id != client.client_id {
        return Err(OAuthError::invalid_grant("authorization code was issued to another client"));
    }
    // RFC 6749 §4.1.3: the redirect_uri must be identical to the authorization
    // request's.
    if redirect_uri != Some(stored.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let verifier = code_verifier
        .ok_or_else(|| OAuthError::invalid_grant("code_verifier is required (PKCE)"))?;
    if !pkce::verify(verifier.expose(), &stored.code_challenge) {
        return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge"));
    }
    resource::check_same_resource(resource, &stored.audience)
}

#[cfg(test)]
mod tests {
    use tollgate_token::Scope;

    use super::*;
    use crate::domain::grants::testing::{Fixture, SUBJECT, auth};
    use crate::domain::model::Client;
    use crate::domain::model::GrantType::{AuthorizationCode as Code, RefreshToken};
    use crate::domain::{Grant, OAuthCore};
    use crate::storage::SqlStore;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn request(client: &Client) -> AuthorizationRequest {
        AuthorizationRequest {
            client: client.clone(),
            redirect_uri: "https://app.example/cb".into(),
            scope: Scope::parse("notes:read").expect("scope"),
            state: None,
            code_challenge: CHALLENGE.into(),
            audience: client.audience.clone(),
        }
    }

    fn redeem(code: &Secret, verifier: &str) -> Grant {
        Grant::AuthorizationCode {
            code: code.clone(),
            redirect_uri: Some("https://app.example/cb".into()),
            code_verifier: Some(Secret::new(verifier)),
            resource: None,
        }
    }

    async fn refused(core: &OAuthCore<SqlStore>, client: &str, grant: Grant) -> (String, String) {
        let err = core.token(&auth(client, Some("s3cret")), grant).await.expect_err("refused");
        (err.code().to_owned(), err.description().to_owned())
    }

    #[tokio::test]
    async fn a_code_is_redeemed_once_and_a_replay_revokes_its_tokens() {
        let fx = Fixture::new().await;
        let client = fx.client("web", Some("s3cret"), &[Code, RefreshToken]).await;
        let code = fx.core.issue_code(&request(&client), SUBJECT).await.expect("code");
        let tokens =
            fx.core.token(&auth("web", Some("s3cret")), redeem(&code, VERIFIER)).await.expect("ok");
        assert_eq!(tokens.subject, SUBJECT);
        assert!(tokens.refresh_token.is_some());

        assert_eq!(
            refused(&fx.core, "web", redeem(&code, VERIFIER)).await,
            ("invalid_grant".into(), SPENT.into())
        );
        // The grant the first redemption created is revoked: its refresh token
        // no longer rotates.
        let refresh = tokens.refresh_token.expect("refresh token");
        let again = Grant::RefreshToken { refresh_token: refresh, scope: None, resource: None };
        assert_eq!(refused(&fx.core, "web", again).await.0, "invalid_grant");
    }

    #[tokio::test]
    async fn the_code_is_bound_to_client_redirect_uri_and_verifier() {
        let fx = Fixture::new().await;
        let web = fx.client("web", Some("s3cret"), &[Code]).await;
        fx.client("other", Some("s3cret"), &[Code]).await;

        let code = fx.core.issue_code(&request(&web), SUBJECT).await.expect("code");
        assert_eq!(
            refused(&fx.core, "other", redeem(&code, VERIFIER)).await,
            ("invalid_grant".into(), "authorization code was issued to another client".into())
        );

        let code = fx.core.issue_code(&request(&web), SUBJECT).await.expect("code");
        let mut grant = redeem(&code, VERIFIER);
        if let Grant::AuthorizationCode { redirect_uri, .. } = &mut grant {
            *redirect_uri = Some("https://app.example/other".into());
        }
        assert_eq!(
            refused(&fx.core, "web", grant).await.1,
            "redirect_uri does not match the authorization request"
        );

        let code = fx.core.issue_code(&request(&web), SUBJECT).await.expect("code");
        assert_eq!(
            refused(&fx.core, "web", redeem(&code, "another-verifier-of-enough-length-000000000"))
                .await
                .1,
            "code_verifier does not match the code_challenge"
        );

        let code = fx.core.issue_code(&request(&web), SUBJECT).await.expect("code");
        let mut grant = redeem(&code, VERIFIER);
        if let Grant::AuthorizationCode { code_verifier, .. } = &mut grant {
            *code_verifier = None;
        }
        assert_eq!(refused(&fx.core, "web", grant).await.1, "code_verifier is required (PKCE)");
    }

    #[tokio::test]
    async fn an_expired_code_is_refused() {
        let fx = Fixture::new().await;
        let web = fx.client("web", Some("s3cret"), &[Code]).await;
        let code = fx.core.issue_code(&request(&web), SUBJECT).await.expect("code");
        fx.advance(fx.core.settings().code_ttl_secs);
        assert_eq!(
            refused(&fx.core, "web", redeem(&code, VERIFIER)).await,
            ("invalid_grant".into(), SPENT.into())
        );
    }

    #[tokio::test]
    async fn no_refresh_token_for_a_client_without_the_refresh_grant() {
        let fx = Fixture::new().await;
        let web = fx.client("web", Some("s3cret"), &[Code]).await;
        let code = fx.core.issue_code(&request(&web), SUBJECT).await.expect("code");
        let tokens =
            fx.core.token(&auth("web", Some("s3cret")), redeem(&code, VERIFIER)).await.expect("ok");
        assert_eq!(tokens.refresh_token, None);
    }
}

//! The client credentials grant (RFC 6749 §4.4): a confidential client asks for
//! a token for itself. No resource owner, no refresh token (§4.4.3), no
//! database write: the token is recorded nowhere, so revoking it means waiting
//! for its short lifetime (or the client's registration being removed).

use crate::domain::client_auth::Authenticated;
use crate::domain::mint::TokenType;
use tollgate_token::OAuthError;

use super::requested_scope;
use crate::domain::{OAuthCore, TokenResponse, resource};

impl<S> OAuthCore<S> {
    /// RFC 6749 §4.4.2: the client acts for itself, so `sub` is its id (RFC 9068
    /// §2.2); the scope is within its registration (§3.3) and the audience the
    /// named resource or its default (RFC 8707).
    pub(in crate::domain) fn client_credentials_grant(
        &self,
        client: &Authenticated,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        // RFC 6749 §4.4: "MUST only be used by confidential clients".
        if client.is_public() {
            return Err(OAuthError::unauthorized_client(
                "a public client cannot use client_credentials",
            ));
        }
        let scope = requested_scope(scope, &client.scope)?;
        let access = self.new_access_token(self.clock.now());
        let audience = resource::audience_for(client, resource)?;
        let access_token =
            self.mint(client, &client.client_id, &audience, &scope, &access, None)?;
        Ok(TokenResponse {
            access_token,
            expires_in: self.settings.access_token_ttl_secs,
            refresh_token: None,
            scope,
            issued_token_type: None,
            token_type: TokenType::of(client),
            subject: client.client_id.clone(),
            grant_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::Grant;
    use crate::domain::grants::testing::{Fixture, auth};
    use crate::domain::model::GrantType::ClientCredentials;

    fn grant(scope: Option<&str>) -> Grant {
        Grant::ClientCredentials { scope: scope.map(str::to_owned), resource: None }
    }

    #[tokio::test]
    async fn the_client_is_the_subject_and_gets_no_refresh_token() {
        let fx = Fixture::new().await;
        fx.client("batch", Some("s3cret"), &[ClientCredentials]).await;
        let tokens = fx
            .core
            .token(&auth("batch", Some("s3cret")), grant(Some("notes:read")))
            .await
            .expect("ok");
        assert_eq!(tokens.subject, "batch");
        assert_eq!(tokens.scope.to_string(), "notes:read");
        assert_eq!(tokens.refresh_token, None);
        assert_eq!(tokens.grant_id, None);
    }

    #[tokio::test]
    async fn a_public_client_is_refused_because_it_is_public() {
        let fx = Fixture::new().await;
        // Registered for the grant, so only the public-client rule can refuse it.
        fx.client("cli", None, &[ClientCredentials]).await;
        let err = fx.core.token(&auth("cli", None), grant(None)).await.expect_err("refused");
        assert_eq!(
            (err.code(), err.description()),
            ("unauthorized_client", "a public client cannot use client_credentials")
        );
    }

    #[tokio::test]
    async fn the_scope_stays_within_the_registration() {
        let fx = Fixture::new().await;
        fx.client("batch", Some("s3cret"), &[ClientCredentials]).await;
        let err = fx
            .core
            .token(&auth("batch", Some("s3cret")), grant(Some("admin")))
            .await
            .expect_err("refused");
        assert_eq!(
            (err.code(), err.description()),
            ("invalid_scope", "scope is not allowed for this client")
        );
        let all = fx.core.token(&auth("batch", Some("s3cret")), grant(None)).await.expect("ok");
        assert_eq!(all.scope.to_string(), "notes:read notes:write");
    }
}

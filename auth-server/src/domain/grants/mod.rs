//! One module per grant the token endpoint runs (RFC 6749 §4, §6; RFC 8628;
//! RFC 8693), each an `impl` on [`OAuthCore`] bounded by the narrowest storage
//! traits it needs, with unit tests of its rules:
//!
//! | grant | module | storage it may touch |
//! |---|---|---|
//! | `authorization_code` (+ PKCE), and issuing the codes | [`authorization_code`] | [`CodeStore`], [`GrantStore`] |
//! | `client_credentials` | [`client_credentials`] | none |
//! | `refresh_token` (rotation) | [`refresh`] | [`GrantStore`] |
//! | `urn:ietf:params:oauth:grant-type:device_code` | [`device`] | [`DeviceStore`], [`GrantStore`] |
//! | `urn:ietf:params:oauth:grant-type:token-exchange` | [`exchange`] | [`RevocationStore`] |
//!
//! The dispatch, client authentication and the telemetry common to every grant
//! are in [`super::OAuthCore::token`].
//!
//! [`CodeStore`]: crate::storage::CodeStore
//! [`DeviceStore`]: crate::storage::DeviceStore
//! [`RevocationStore`]: crate::storage::RevocationStore

pub mod authorization_code;
pub mod client_credentials;
pub mod device;
pub mod exchange;
pub mod refresh;
mod txn_token;

use crate::domain::client_auth::Authenticated;
use crate::domain::mint::TokenType;
use tollgate_token::{OAuthError, Scope};

use super::model::{GrantRecord, IssuedAccessToken, NextRefreshToken};
use super::{OAuthCore, TokenResponse, storage_failure};
use crate::storage::{GrantSource, GrantStore};

/// RFC 6749 §3.3: an absent scope means the client's registered scopes; a present
/// one must be within them.
pub(crate) fn requested_scope(raw: Option<&str>, allowed: &Scope) -> Result<Scope, OAuthError> {
    let Some(raw) = raw else { return Ok(allowed.clone()) };
    let asked = Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string()))?;
    if asked.not_in(allowed).next().is_some() {
        return Err(OAuthError::invalid_scope("scope is not allowed for this client"));
    }
    if asked.is_empty() {
        return Err(OAuthError::invalid_scope("scope is empty"));
    }
    Ok(asked)
}

impl<S> OAuthCore<S> {
    /// The first tokens of a new grant: its access token, signed, and a
    /// refresh token if the client may refresh, with the records the store
    /// keeps of them.
    pub(super) fn first_tokens(
        &self,
        client: &Authenticated,
        grant: &GrantRecord,
    ) -> Result<(TokenResponse, Option<NextRefreshToken>, IssuedAccessToken), OAuthError> {
        let refresh = self.new_refresh_token(client, grant.created_at);
        let access = self.new_access_token(grant.created_at);
        let access_token =
            self.mint(client, &grant.subject, &grant.audience, &grant.scope, &access, None)?;
        let (refresh_token, refresh) = refresh.unzip();
        let tokens = TokenResponse {
            access_token,
            expires_in: self.settings.access_token_ttl_secs,
            refresh_token,
            scope: grant.scope.clone(),
            issued_token_type: None,
            token_type: TokenType::of(client),
            subject: grant.subject.clone(),
            grant_id: Some(grant.grant_id.clone()),
        };
        Ok((tokens, refresh, access))
    }
}

impl<S: GrantStore> OAuthCore<S> {
    /// Writes a new grant (the owner's approval of a device) with its first
    /// refresh and access tokens, and returns them. If the approval was
    /// withdrawn meanwhile, nothing is handed out.
    pub(super) async fn issue_for_new_grant(
        &self,
        client: &Authenticated,
        grant: GrantRecord,
        source: Option<GrantSource<'_>>,
    ) -> Result<TokenResponse, OAuthError> {
        let (tokens, refresh, access) = self.first_tokens(client, &grant)?;
        let live = self
            .store
            .create_grant(&grant, refresh.as_ref(), &access, source)
            .await
            .map_err(storage_failure)?;
        if !live {
            tracing::warn!(client_id = %client.client_id, "approval withdrawn during redemption");
            return Err(OAuthError::invalid_grant("the approval was withdrawn"));
        }
        Ok(tokens)
    }
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_scope_is_the_registered_one() {
        let allowed = Scope::parse("a b").expect("scope");
        assert_eq!(requested_scope(None, &allowed).expect("ok"), allowed);
    }

    #[test]
    fn a_requested_scope_must_be_registered_and_not_empty() {
        let allowed = Scope::parse("a b").expect("scope");
        assert_eq!(requested_scope(Some("b"), &allowed).expect("ok").to_string(), "b");
        let err = requested_scope(Some("a c"), &allowed).expect_err("c is not registered");
        assert_eq!(
            (err.code(), err.description()),
            ("invalid_scope", "scope is not allowed for this client")
        );
        let err = requested_scope(Some(""), &allowed).expect_err("empty");
        assert_eq!(err.code(), "invalid_scope");
    }
}

//! The refresh token grant (RFC 6749 §6) with rotation (RFC 9700 §4.14.2): each
//! use spends the presented token and issues its successor; a spent token shown
//! again revokes the whole grant.

use crate::domain::client_auth::Authenticated;
use crate::domain::mint::TokenType;
use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::{OAuthError, Scope, Secret};

use crate::domain::model::NextRefreshToken;
use crate::domain::{OAuthCore, TokenResponse, resource, secrets, storage_failure};
use crate::storage::{GrantStore, RotateOutcome};

const INVALID: &str = "refresh token is invalid, expired, revoked or already used";
const GRANT_ENDED: &str =
    "the grant has reached its maximum lifetime; the owner must sign in again";

impl<S: GrantStore> OAuthCore<S> {
    /// RFC 6749 §6 with rotation: the presented refresh token is spent and a new
    /// one issued; the scope may be narrowed, never widened.
    pub(in crate::domain) async fn refresh_grant(
        &self,
        client: &Authenticated,
        refresh_token: &Secret,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenResponse, OAuthError> {
        let now = self.clock.now();
        let token_hash = secrets::hash_secret(refresh_token.expose());
        let Some(record) = self
            .store
            .refresh_token(&token_hash)
            .await
            .map_err(storage_failure)?
            .filter(|record| record.client_id == client.client_id)
        else {
            return Err(OAuthError::invalid_grant(INVALID));
        };
        // RFC 9700 §4.14.2: rotation renews the idle lifetime, never the
        // grant's absolute one.
        let grant_ends =
            record.grant.created_at.saturating_add(self.settings.grant_max_lifetime_secs);
        if now >= grant_ends {
            return Err(OAuthError::invalid_grant(GRANT_ENDED));
        }
        // RFC 9449 §5: a public client's grant is bound to the DPoP key its
        // first token request proved, and each refresh proves it again. Checked
        // before the token is spent: a thief without the key does not burn the
        // rightful client's token.
        if let Some(bound) = &record.grant.dpop_jkt
            && client.dpop_jkt.as_deref() != Some(bound.as_str())
        {
            return Err(OAuthError::invalid_dpop_proof(
                "the refresh token is bound to a DPoP key this request did not prove",
            ));
        }
        // RFC 8707 §2.2: a resource other than the grant's is refused before the
        // token is spent, so the client keeps it.
        if resource.is_some() {
            resource::check_same_resource(resource, &record.grant.audience)?;
        }
        let narrowed = scope
            .map(|raw| Scope::parse(raw).map_err(|e| OAuthError::invalid_scope(e.to_string())))
            .transpose()?;
        let next_token = secrets::generate_secret();
        let next = NextRefreshToken {
            token_hash: secrets::hash_secret(&next_token),
            expires_at: self.refresh_expiry(now, record.grant.created_at),
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
                // RFC 9449 §5: a public client's grant is bound from the
                // first request that proves a key, refreshes included.
                client.dpop_jkt.as_deref().filter(|_| client.is_public()),
            )
            .await
            .map_err(storage_failure)?;
        let rotated = match outcome {
            RotateOutcome::Rotated(rotated) => rotated,
            RotateOutcome::Invalid => return Err(OAuthError::invalid_grant(INVALID)),
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
                return Err(OAuthError::invalid_grant(INVALID));
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
            refresh_token: Some(Secret::new(next_token)),
            scope,
            issued_token_type: None,
            token_type: TokenType::of(client),
            subject: rotated.grant.subject,
            grant_id: Some(rotated.grant.grant_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use tollgate_token::{Clock as _, Scope, Secret};

    use super::INVALID;
    use crate::domain::grants::testing::{Fixture, SUBJECT, auth};
    use crate::domain::model::GrantRecord;
    use crate::domain::model::GrantType::{AuthorizationCode, RefreshToken};
    use crate::domain::{Grant, TokenResponse};

    /// A grant as if the owner had approved `notes:read notes:write` for `web`.
    async fn granted(fx: &Fixture) -> TokenResponse {
        let client = fx.client("web", Some("s3cret"), &[AuthorizationCode, RefreshToken]).await;
        let grant = GrantRecord {
            grant_id: "grant-1".into(),
            client_id: "web".into(),
            subject: SUBJECT.into(),
            scope: Scope::parse("notes:read notes:write").expect("scope"),
            audience: client.audience.clone(),
            created_at: fx.clock.now(),
            dpop_jkt: None,
        };
        fx.core.issue_for_new_grant(&client.clone().into(), grant, None).await.expect("grant")
    }

    fn refresh(token: &Secret, scope: Option<&str>) -> Grant {
        Grant::RefreshToken {
            refresh_token: token.clone(),
            scope: scope.map(str::to_owned),
            resource: None,
        }
    }

    async fn refused(fx: &Fixture, client: &str, grant: Grant) -> (&'static str, String) {
        let err = fx.core.token(&auth(client, Some("s3cret")), grant).await.expect_err("refused");
        (err.code(), err.description().to_owned())
    }

    #[tokio::test]
    async fn rotation_spends_the_old_token() {
        let fx = Fixture::new().await;
        let first = granted(&fx).await.refresh_token.expect("refresh token");
        let next =
            fx.core.token(&auth("web", Some("s3cret")), refresh(&first, None)).await.expect("ok");
        let second = next.refresh_token.expect("rotated");
        assert_ne!(second, first);
        assert_eq!(next.grant_id.as_deref(), Some("grant-1"));
        // Within the grace period a reuse is refused but the grant lives on.
        assert_eq!(
            refused(&fx, "web", refresh(&first, None)).await,
            ("invalid_grant", INVALID.into())
        );
        fx.core
            .token(&auth("web", Some("s3cret")), refresh(&second, None))
            .await
            .expect("still live");
    }

    #[tokio::test]
    async fn a_late_reuse_revokes_the_whole_grant() {
        let fx = Fixture::new().await;
        let first = granted(&fx).await.refresh_token.expect("refresh token");
        let next =
            fx.core.token(&auth("web", Some("s3cret")), refresh(&first, None)).await.expect("ok");
        fx.advance(fx.core.settings().refresh_reuse_grace_secs + 1);
        assert_eq!(refused(&fx, "web", refresh(&first, None)).await.0, "invalid_grant");
        // The rightful successor dies with the grant.
        let second = next.refresh_token.expect("rotated");
        assert_eq!(
            refused(&fx, "web", refresh(&second, None)).await,
            ("invalid_grant", INVALID.into())
        );
    }

    #[tokio::test]
    async fn the_scope_narrows_but_never_widens() {
        let fx = Fixture::new().await;
        let first = granted(&fx).await.refresh_token.expect("refresh token");
        assert_eq!(
            refused(&fx, "web", refresh(&first, Some("notes:read admin"))).await,
            ("invalid_scope", "scope exceeds the original grant".into())
        );
        // Nothing was spent by the refusal.
        let narrowed = fx
            .core
            .token(&auth("web", Some("s3cret")), refresh(&first, Some("notes:read")))
            .await
            .expect("narrowed");
        assert_eq!(narrowed.scope.to_string(), "notes:read");
    }

    #[tokio::test]
    async fn another_clients_token_is_refused_and_not_spent() {
        let fx = Fixture::new().await;
        let first = granted(&fx).await.refresh_token.expect("refresh token");
        fx.client("other", Some("s3cret"), &[RefreshToken]).await;
        assert_eq!(
            refused(&fx, "other", refresh(&first, None)).await,
            ("invalid_grant", INVALID.into())
        );
        fx.core
            .token(&auth("web", Some("s3cret")), refresh(&first, None))
            .await
            .expect("owner's still");
    }

    #[tokio::test]
    async fn an_expired_refresh_token_is_refused() {
        let fx = Fixture::new().await;
        let first = granted(&fx).await.refresh_token.expect("refresh token");
        fx.advance(fx.core.settings().refresh_token_ttl_secs);
        assert_eq!(
            refused(&fx, "web", refresh(&first, None)).await,
            ("invalid_grant", INVALID.into())
        );
    }
}

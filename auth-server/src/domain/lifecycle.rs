//! After issuance: introspection (RFC 7662), revocation (RFC 7009), and the
//! denylist resource servers fetch so revoked access tokens stop working without
//! a call per request.

use tollgate_telemetry::audit::{self, Event, Subject};
use tollgate_token::{AccessTokenClaims, OAuthError};

use super::model::{Client, RefreshTokenRecord};
use super::{ClientAuth, OAuthCore, secrets, storage_failure};
use crate::storage::Store;

/// RFC 7009 §2.1 / RFC 7662 §2.1 `token_type_hint`: where to look first. An
/// unknown hint is ignored and both kinds are searched, as both RFCs require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTypeHint {
    AccessToken,
    RefreshToken,
}

/// How long past its `exp` a revoked token stays on the denylist: as long as the
/// most leeway a protected service may give (`OAUTH_LEEWAY`, at most
/// `tollgate_service_kit::protect::MAX_LEEWAY`), so a revoked token never works
/// again within a verifier's leeway.
pub const DENYLIST_LEEWAY_SECS: i64 = tollgate_service_kit::protect::MAX_LEEWAY;
impl TokenTypeHint {
    pub fn parse(hint: Option<&str>) -> Option<Self> {
        match hint {
            Some("access_token") => Some(Self::AccessToken),
            Some("refresh_token") => Some(Self::RefreshToken),
            _ => None,
        }
    }
}

/// What introspection may say about an active token (RFC 7662 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveToken {
    pub scope: String,
    pub client_id: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: Option<i64>,
    pub aud: Vec<String>,
    pub iss: String,
    /// `Bearer`, or `DPoP` for a DPoP-bound one (RFC 9449 §6.2), for access
    /// tokens; absent for refresh tokens.
    pub token_type: Option<&'static str>,
    pub jti: Option<String>,
    /// RFC 8705 §3.2: the certificate a bound access token is bound to.
    pub x5t_s256: Option<String>,
    /// RFC 9449 §6.2: the DPoP key a bound access token is bound to.
    pub jkt: Option<String>,
}

/// One page of the denylist ([`OAuthCore::revoked_access_tokens`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenylistPage {
    /// `(jti, exp)`, in `(exp, jti)` order.
    pub tokens: Vec<(String, i64)>,
    /// The last row here when more follow: where the next page starts.
    pub next_after: Option<(String, i64)>,
}

/// A token found by its value, before anyone is told anything about it.
enum Found {
    Access(AccessTokenClaims),
    Refresh(RefreshTokenRecord),
}

impl<S: Store> OAuthCore<S> {
    /// A confidential client's identity, proven (introspection and the denylist
    /// are for services that can keep a secret).
    async fn confidential_client(&self, auth: &ClientAuth) -> Result<Client, OAuthError> {
        let client = self.authenticate_client(auth).await?;
        if client.is_public() {
            return Err(OAuthError::invalid_client("this endpoint needs client authentication"));
        }
        Ok(client.client)
    }

    /// Looks a token up: refresh tokens by hash, access tokens by signature (our
    /// own keys, any audience). Expired, malformed or unknown is `None`.
    async fn find(
        &self,
        token: &str,
        hint: Option<TokenTypeHint>,
    ) -> Result<Option<Found>, OAuthError> {
        let now = self.clock.now();
        let keys = self.signer.verification_keys(now);
        let as_access = || self.own_tokens.verify_any_audience(&keys, token, now).ok();
        // The hinted kind first; each kind is tried once.
        let access_first = hint == Some(TokenTypeHint::AccessToken);
        if access_first && let Some(claims) = as_access() {
            return Ok(Some(Found::Access(claims)));
        }
        let refresh = self
            .store
            .refresh_token(&secrets::hash_secret(token))
            .await
            .map_err(storage_failure)?;
        if let Some(record) = refresh {
            return Ok(Some(Found::Refresh(record)));
        }
        Ok(if access_first { None } else { as_access().map(Found::Access) })
    }

    /// RFC 7662: tells an authenticated confidential client about a token that
    /// was issued to it or is meant for it (its client id is in `aud`). Anything
    /// else, and every inactive token, is just `None` (`{"active": false}`), so
    /// the answer never says why (RFC 7662 §2.2, §4).
    #[tracing::instrument(name = "oauth.introspect", skip_all, fields(client_id = %auth.logged_id(), active))]
    pub async fn introspect(
        &self,
        auth: &ClientAuth,
        token: &str,
        hint: Option<TokenTypeHint>,
    ) -> Result<Option<ActiveToken>, OAuthError> {
        let caller = self.confidential_client(auth).await?;
        let now = self.clock.now();
        let active = match self.find(token, hint).await? {
            Some(Found::Access(claims)) => {
                let revoked = self
                    .store
                    .is_access_token_revoked(&claims.jti)
                    .await
                    .map_err(storage_failure)?;
                let visible =
                    claims.client_id == caller.client_id || claims.aud.contains(&caller.client_id);
                (!revoked && visible).then(|| ActiveToken {
                    scope: claims.scope.clone().unwrap_or_default(),
                    client_id: claims.client_id.clone(),
                    sub: claims.sub.clone(),
                    exp: claims.exp,
                    iat: claims.iat,
                    nbf: claims.nbf,
                    aud: claims.aud.iter().map(str::to_owned).collect(),
                    iss: claims.iss.clone(),
                    // RFC 9449 §6.2: a resource server that introspects
                    // must learn the binding, or it would take a DPoP-bound
                    // token for a bearer one.
                    token_type: Some(if claims.cnf.as_ref().is_some_and(|cnf| cnf.jkt.is_some()) {
                        "DPoP"
                    } else {
                        "Bearer"
                    }),
                    x5t_s256: claims.cnf.as_ref().and_then(|cnf| cnf.x5t_s256.clone()),
                    jkt: claims.cnf.and_then(|cnf| cnf.jkt),
                    jti: Some(claims.jti),
                })
            }
            Some(Found::Refresh(record)) => {
                let visible = record.client_id == caller.client_id;
                (visible && record.is_active(now)).then(|| ActiveToken {
                    scope: record.scope.to_string(),
                    client_id: record.client_id.clone(),
                    sub: record.grant.subject.clone(),
                    exp: record.expires_at,
                    iat: record.issued_at,
                    nbf: None,
                    aud: vec![record.grant.audience.clone()],
                    iss: self.settings.issuer.clone(),
                    token_type: None,
                    jti: None,
                    x5t_s256: None,
                    jkt: None,
                })
            }
            None => None,
        };
        tracing::Span::current().record("active", active.is_some());
        tracing::info!(active = active.is_some(), "token introspected");
        Ok(active)
    }

    /// RFC 7009: the client revokes one of its own tokens. A refresh token takes
    /// its whole grant with it (every refresh and access token descended from
    /// it); an access token goes on the denylist. An unknown or expired token is
    /// not an error (§2.2), but another client's token is refused: the request
    /// must not look successful while the token stays valid.
    #[tracing::instrument(name = "oauth.revoke", skip_all, fields(client_id = %auth.logged_id()))]
    pub async fn revoke(
        &self,
        auth: &ClientAuth,
        token: &str,
        hint: Option<TokenTypeHint>,
    ) -> Result<(), OAuthError> {
        let caller = self.authenticate_client(auth).await?;
        // Each revocation can add to the denylist every service fetches: this
        // bounds how fast one client grows it (rate × access-token lifetime).
        self.throttles().revoke.check(&caller.client_id)?;
        let now = self.clock.now();
        let not_yours =
            || OAuthError::unauthorized_client("the token was not issued to this client");
        match self.find(token, hint).await? {
            Some(Found::Refresh(record)) => {
                if record.client_id != caller.client_id {
                    return Err(not_yours());
                }
                self.store
                    .revoke_grant(&record.grant.grant_id, now)
                    .await
                    .map_err(storage_failure)?;
                audit::record(
                    Event::GrantRevoked,
                    Subject {
                        subject: Some(&record.grant.subject),
                        client_id: Some(&caller.client_id),
                        grant_id: Some(&record.grant.grant_id),
                        reason: Some("the client revoked its refresh token (RFC 7009)"),
                        ..Subject::default()
                    },
                );
            }
            Some(Found::Access(claims)) => {
                if claims.client_id != caller.client_id {
                    return Err(not_yours());
                }
                self.store
                    .revoke_access_token(&claims.jti, claims.exp, now)
                    .await
                    .map_err(storage_failure)?;
                audit::record(
                    Event::TokenRevoked,
                    Subject {
                        subject: Some(&claims.sub),
                        client_id: Some(&caller.client_id),
                        reason: Some("the client revoked its access token (RFC 7009)"),
                        ..Subject::default()
                    },
                );
            }
            None => tracing::info!("revocation of an unknown or expired token"),
        }
        Ok(())
    }

    /// One page of the denylist for resource servers: at most `limit` revoked
    /// access tokens that have not expired, as `(jti, exp)` in `(exp, jti)`
    /// order, after the row `after` (`None` for the first page), and the row
    /// to go on from when there are more. For authenticated confidential
    /// clients. The caller bounds `limit` (the gRPC adapter caps it by the
    /// contract).
    ///
    /// Read page by page, the list still holds every token revoked before the
    /// first page was read and not expired since: the table only grows (a
    /// revocation inserts, never updates) until the purge deletes rows that
    /// have expired, and a keyset cursor, unlike an offset, is not moved by
    /// deletions, so each live row is on exactly one page.
    pub async fn revoked_access_tokens(
        &self,
        auth: &ClientAuth,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<DenylistPage, OAuthError> {
        self.confidential_client(auth).await?;
        // One more row than asked says whether another page follows, so the
        // last page is never an empty one.
        // A verifier accepts a token for its leeway past `exp`: a revoked token
        // stays on the list that much longer, or it would work again then.
        let live_after = self.clock.now() - DENYLIST_LEEWAY_SECS;
        let mut tokens = self
            .store
            .revoked_access_tokens(live_after, after, limit.saturating_add(1))
            .await
            .map_err(storage_failure)?;
        let more = tokens.len() > limit as usize;
        tokens.truncate(limit as usize);
        let next_after = if more { tokens.last().cloned() } else { None };
        Ok(DenylistPage { tokens, next_after })
    }
}

#[cfg(test)]
mod tests {
    use super::DENYLIST_LEEWAY_SECS;
    use crate::domain::Grant;
    use crate::domain::grants::testing::{Fixture, auth};
    use crate::domain::model::GrantType::ClientCredentials;

    #[tokio::test]
    async fn a_revoked_token_stays_on_the_denylist_through_a_verifiers_leeway_past_its_exp() {
        let fx = Fixture::new().await;
        fx.client("batch", Some("s3cret"), &[ClientCredentials]).await;
        let batch = auth("batch", Some("s3cret"));
        let grant = Grant::ClientCredentials { scope: None, resource: None };
        let issued = fx.core.token(&batch, grant).await.expect("issued");
        fx.core.revoke(&batch, issued.access_token.expose(), None).await.expect("revoked");
        let listed = async || {
            fx.core.revoked_access_tokens(&batch, None, 10).await.expect("listed").tokens.len()
        };
        assert_eq!(listed().await, 1);
        // Past its exp, a verifier with up to the largest allowed leeway still
        // accepts the token: it stays listed until then, and no longer.
        fx.advance(issued.expires_in + DENYLIST_LEEWAY_SECS);
        assert_eq!(listed().await, 1);
        fx.advance(1);
        assert_eq!(listed().await, 0);
    }
}

//! Minting what the token endpoint hands out: the RFC 9068 access token (a
//! signed JWT), a refresh token (a random secret whose hash alone is stored),
//! and the RFC 6749 §5.1 response that carries them. No storage: the grants
//! decide what to write, and write it before anything minted here leaves.

use tollgate_token::{AccessTokenClaims, Actor, Audience, Confirmation, OAuthError, Scope, Secret};

use super::client_auth::Authenticated;
use super::model::{Client, GrantType, IssuedAccessToken, NextRefreshToken};
use super::{OAuthCore, secrets};

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub expires_in: i64,
    pub refresh_token: Option<Secret>,
    /// Always sent, so the client knows what it got (RFC 6749 §3.3).
    pub scope: Scope,
    /// RFC 8693 §2.2.1, for token exchange only.
    pub issued_token_type: Option<&'static str>,
    /// `Bearer`, or `DPoP` for a token bound to a DPoP key (RFC 9449 §5).
    pub token_type: TokenType,
    /// Who the token is for (`sub`), and the grant it belongs to: for the audit
    /// trail and spans, never sent to the client.
    pub subject: String,
    pub grant_id: Option<String>,
}

/// The `token_type` of a token response (RFC 6749 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Bearer,
    /// RFC 9449 §5: bound to a DPoP key, used with the `DPoP` scheme.
    DPoP,
    /// RFC 8693 §2.2.1 `N_A`: not an access token at all (a Txn-Token,
    /// draft-ietf-oauth-transaction-tokens §"Txn-Token Response").
    NotApplicable,
}

impl TokenType {
    /// The token type an access token minted for `client` has.
    pub fn of(client: &Authenticated) -> Self {
        if client.dpop_jkt.is_some() { Self::DPoP } else { Self::Bearer }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::DPoP => "DPoP",
            Self::NotApplicable => "N_A",
        }
    }
}

impl<S> OAuthCore<S> {
    /// A refresh token for `client`, if it may refresh at all (RFC 6749 §6: a
    /// client registered without the refresh grant gets none): the value for the
    /// client, and what the store keeps (its hash).
    pub(super) fn new_refresh_token(
        &self,
        client: &Client,
        now: i64,
    ) -> Option<(Secret, NextRefreshToken)> {
        if !client.may_use(GrantType::RefreshToken) {
            return None;
        }
        let token = secrets::generate_secret();
        let record = NextRefreshToken {
            token_hash: secrets::hash_secret(&token),
            // A new grant: created now.
            expires_at: self.refresh_expiry(now, now),
        };
        Some((Secret::new(token), record))
    }

    /// When a refresh token issued at `now` for a grant created at
    /// `grant_created_at` expires: after the idle lifetime, and never after
    /// the grant's absolute lifetime.
    pub(super) fn refresh_expiry(&self, now: i64, grant_created_at: i64) -> i64 {
        let idle = now.saturating_add(self.settings.refresh_token_ttl_secs);
        let absolute = grant_created_at.saturating_add(self.settings.grant_max_lifetime_secs);
        idle.min(absolute)
    }

    /// The identity and lifetime of the next access token, fixed before it is
    /// recorded and signed.
    pub(super) fn new_access_token(&self, now: i64) -> IssuedAccessToken {
        // 128 bits from the thread's CSPRNG (ChaCha, seeded and reseeded from
        // the OS): a `jti` must be unique and unguessable (RFC 7519 §4.1.7),
        // not a secret, and a system call per token for it was a measurable
        // share of a token's cost. Secrets (codes, refresh tokens) still come
        // straight from the OS (`secrets::generate_secret`).
        let mut jti = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut jti);
        IssuedAccessToken {
            jti: base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jti),
            issued_at: now,
            expires_at: now + self.settings.access_token_ttl_secs,
        }
    }

    /// Signs an RFC 9068 access token: `iss` this server, `sub` the resource
    /// owner (or the client itself, §2.2), `aud` the one resource it is for
    /// (RFC 8707), `client_id`, `scope`, and `act` for an exchanged token
    /// (RFC 8693 §4.1).
    pub(super) fn mint(
        &self,
        client: &Authenticated,
        subject: &str,
        audience: &str,
        scope: &Scope,
        access: &IssuedAccessToken,
        act: Option<Actor>,
    ) -> Result<Secret, OAuthError> {
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
            // RFC 8705 §3: bound to the certificate the client authenticated
            // with; RFC 9449 §6.1: bound to the DPoP key its request proved.
            cnf: (client.certificate_thumbprint.is_some() || client.dpop_jkt.is_some()).then(
                || Confirmation {
                    x5t_s256: client.certificate_thumbprint.clone(),
                    jkt: client.dpop_jkt.clone(),
                },
            ),
        };
        self.signer.sign(&claims, now).map(Secret::new).map_err(|err| {
            tracing::error!(error = %err, "signing failed");
            OAuthError::ServerError
        })
    }
}

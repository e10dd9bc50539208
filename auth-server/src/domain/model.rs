//! The records the protocol core works with. Plain data: no I/O.

use std::fmt;

use tollgate_token::{Jwk, KeyAlgorithm, Scope, Secret};

/// The grant types this server implements (RFC 6749 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    AuthorizationCode,
    ClientCredentials,
    RefreshToken,
    /// RFC 8693.
    TokenExchange,
    /// RFC 8628.
    DeviceCode,
}

impl GrantType {
    pub const ALL: [GrantType; 5] = [
        GrantType::AuthorizationCode,
        GrantType::ClientCredentials,
        GrantType::RefreshToken,
        GrantType::TokenExchange,
        GrantType::DeviceCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
            Self::RefreshToken => "refresh_token",
            Self::TokenExchange => TOKEN_EXCHANGE,
            Self::DeviceCode => DEVICE_CODE,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

impl fmt::Display for GrantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 8693 §2.1: the token-exchange grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 7523 §2.2: the client assertion type of `private_key_jwt`.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// RFC 8628 §3.4: the device authorization grant type.
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8693 §3: the only token type exchanged here, in and out.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A registered client (RFC 6749 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the client secret; `None` for a public client (RFC 6749 §2.1).
    pub secret_hash: Option<String>,
    /// Compared by exact string match (RFC 9700 §2.1), loopback ports excepted
    /// (RFC 8252 §7.3).
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    /// What the client may ask for.
    pub scope: Scope,
    /// The resource its access tokens are for (`aud`).
    pub audience: String,
    /// RFC 8693 policy: the audiences this client may exchange a subject's token
    /// for (a service calling the services behind it).
    pub exchange_audiences: Vec<String>,
    /// For `private_key_jwt` (RFC 7523): the client's public keys.
    pub jwks: Option<Vec<tollgate_token::Jwk>>,
    /// For `tls_client_auth` (RFC 8705 §2.1.2, `tls_client_auth_san_dns`):
    /// the DNS name its TLS client certificate must carry. The certificate's
    /// chain is checked by the TLS layer against the deployment's client CA.
    pub tls_client_auth_san_dns: Option<String>,
    /// RFC 8707: resource URIs the client may name with `resource`, each then
    /// the `aud` of the token.
    pub resources: Vec<String>,
    /// RFC 9449 §5.2 (`dpop_bound_access_tokens`): every token request of
    /// this client must carry a DPoP proof; it is never issued a bearer token.
    pub dpop_bound_access_tokens: bool,
}

impl Client {
    /// RFC 6749 §2.1: a client that cannot authenticate (no secret, no keys).
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none() && self.jwks.is_none() && self.tls_client_auth_san_dns.is_none()
    }

    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
}

/// A resource owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The stable identifier that becomes `sub`.
    pub subject: String,
    pub username: String,
    /// argon2id PHC string: slow to crack, still never logged.
    pub password_hash: Secret,
}

/// An issued authorization code, as stored (the code itself is not: only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    pub code_hash: String,
    pub client_id: String,
    pub subject: String,
    pub redirect_uri: String,
    pub scope: Scope,
    /// The PKCE S256 challenge (RFC 7636 §4.2).
    pub code_challenge: String,
    pub issued_at: i64,
    pub expires_at: i64,
    /// The audience of the tokens it yields (RFC 8707).
    pub audience: String,
}

/// A resource owner's authorization of a client: the family of refresh tokens
/// (and the access tokens minted from them) descending from one consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub grant_id: String,
    pub client_id: String,
    pub subject: String,
    pub scope: Scope,
    pub audience: String,
    pub created_at: i64,
    /// RFC 9449 §5: the DPoP key (its RFC 7638 thumbprint) a public
    /// client's grant is bound to; every refresh must prove it.
    pub dpop_jkt: Option<String>,
}

/// A refresh token to store (its hash only). Its grant, client and scope are
/// the grant's when the grant is created, and the spent token's when it is
/// rotated (RFC 6749 §6: a rotated refresh token keeps the scope of the one it
/// replaces); it is issued when it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextRefreshToken {
    pub token_hash: String,
    pub expires_at: i64,
}

/// An access token minted for a grant: recorded so that revoking the grant can
/// deny it (RFC 7009 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedAccessToken {
    pub jti: String,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A stored refresh token, for introspection and revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub grant: GrantRecord,
    pub client_id: String,
    pub scope: Scope,
    pub issued_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub grant_revoked: bool,
}

impl RefreshTokenRecord {
    /// RFC 7662 §2.2: usable right now.
    pub fn is_active(&self, now: i64) -> bool {
        self.used_at.is_none() && !self.grant_revoked && now < self.expires_at
    }
}

/// A device authorization (RFC 8628 §3.2) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    pub device_code_hash: String,
    /// Normalised: upper case, no separator.
    pub user_code: String,
    pub client_id: String,
    pub scope: Scope,
    pub created_at: i64,
    pub expires_at: i64,
    pub poll_interval: i64,
    /// Who approved it, once someone has.
    pub subject: Option<String>,
}

/// The result of spending a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedRefresh {
    pub grant: GrantRecord,
    /// The scope of the spent refresh token.
    pub scope: Scope,
}

/// A signing key pair as stored.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: KeyAlgorithm,
    /// PKCS#8 DER private key.
    pub private_pkcs8: Secret<Vec<u8>>,
    pub public_jwk: Jwk,
    pub created_at: i64,
    /// From when it signs; published before that so verifiers have it first.
    pub activate_at: i64,
}

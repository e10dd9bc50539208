//! The claims of a JWT access token, as RFC 9068 §2.2 defines them.

use serde::{Deserialize, Serialize};

/// The JOSE `typ` header of a JWT access token (RFC 9068 §2.1).
pub const JWT_ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// The claims of an access token (RFC 9068 §2.2). All but `scope` and `nbf` are
/// required: a token without one of them does not deserialize, so it never
/// validates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// The issuer identifier, byte-for-byte as in the server's RFC 8414 metadata.
    pub iss: String,
    /// The resource owner's subject, or the client's id for `client_credentials`
    /// (RFC 9068 §2.2).
    pub sub: String,
    /// The resource server(s) the token is for.
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Unique per token (RFC 7519 §4.1.7).
    pub jti: String,
    pub client_id: String,
    /// Space-delimited granted scopes (RFC 8693 §4.2), when any were granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 §4.1: the party acting for `sub` (a service that exchanged the
    /// subject's token), with any earlier actor nested inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// RFC 8705 §3.1: the certificate the token is bound to. A protected
    /// service accepts such a token only over a connection whose client
    /// certificate has this thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// The `cnf` (confirmation) claim (RFC 7800 §3.1) of a certificate-bound
/// token (RFC 8705 §3.1) or a DPoP-bound one (RFC 9449 §6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// `x5t#S256`: the base64url SHA-256 of the certificate's DER.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
    /// `jkt`: the JWK SHA-256 thumbprint (RFC 7638) of the client's DPoP key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

impl Confirmation {
    /// Bound to the certificate `der`.
    pub fn certificate(der: &[u8]) -> Self {
        Self { x5t_s256: Some(certificate_thumbprint(der)), jkt: None }
    }

    /// Bound to the DPoP key whose thumbprint is `jkt`.
    pub fn dpop_key(jkt: impl Into<String>) -> Self {
        Self { x5t_s256: None, jkt: Some(jkt.into()) }
    }
}

/// RFC 8705 §3.1: the `x5t#S256` of a certificate, the base64url-encoded
/// (no padding) SHA-256 of its DER encoding.
pub fn certificate_thumbprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        sha2::Sha256::digest(der),
    )
}

/// The `act` claim (RFC 8693 §4.1): who is acting, and for whom they acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl AccessTokenClaims {
    /// The granted scopes, one by one.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.as_deref().unwrap_or("").split(' ').filter(|s| !s.is_empty())
    }

    /// Whether `scope` was granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

/// The `aud` claim: one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is exactly one of the values (no prefix or
    /// case-insensitive matching: RFC 7519 §4.1.3 compares strings).
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(all) => all.iter().any(|a| a == audience),
        }
    }

    /// Every value, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let values: &[String] = match self {
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(all) => all,
        };
        values.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audience_matches_exactly_as_string_or_array() {
        let one: Audience = serde_json::from_str(r#""https://api.example""#).unwrap();
        assert!(one.contains("https://api.example"));
        assert!(!one.contains("https://api.example/"));
        let many: Audience = serde_json::from_str(r#"["a","https://api.example"]"#).unwrap();
        assert!(many.contains("https://api.example"));
        assert!(!many.contains("https://API.example"));
    }

    #[test]
    fn scopes_split_on_spaces() {
        let claims = AccessTokenClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: Audience::One("a".into()),
            exp: 2,
            iat: 1,
            nbf: None,
            jti: "j".into(),
            client_id: "c".into(),
            scope: Some("notes:read profile:read".into()),
            act: None,
            cnf: None,
        };
        assert!(claims.has_scope("profile:read"));
        assert!(!claims.has_scope("profile"));
        assert_eq!(claims.scopes().count(), 2);
    }
}

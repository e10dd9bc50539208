//! The Tollgate OAuth client: what an application acting for a resource owner
//! does, built on the `oauth2` crate.
//!
//! - [`discovery`]: find the authorization server from its issuer (RFC 8414).
//! - [`oauth`]: the grants (authorization code + PKCE, client credentials, refresh).
//! - [`loopback`]: the native-app redirect listener (RFC 8252).
//! - [`tokens`]: the tokens held, in an owner-only file.
//! - [`resource`]: calling the resource server with the access token.
//! - [`dpop`]: the key DPoP-bound tokens are bound to, and its proofs (RFC 9449).
//! - [`owner`]: a scripted resource owner for the demo and the tests.
//! - [`demo`]: the whole flow, narrated.
#![forbid(unsafe_code)]

pub mod claims;
pub mod demo;
pub mod discovery;
pub mod dpop;
pub mod loopback;
pub mod oauth;
pub mod owner;
pub mod resource;
pub mod tokens;

/// Everything that can go wrong for the client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("discovery failed: {0}")]
    Discovery(String),
    /// The authorization server answered with an RFC 6749 §5.2 / §4.1.2.1 error.
    #[error("the authorization server refused: {error}: {description}")]
    Refused { error: String, description: String },
    #[error("{0}")]
    Protocol(String),
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("token file {0}")]
    TokenFile(String),
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("cannot reach the resource server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("the resource server refused: {0}")]
    Rpc(Box<tonic::Status>),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl From<tonic::Status> for ClientError {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(Box::new(status))
    }
}

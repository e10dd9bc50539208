//! The token model shared by every Tollgate service.
//!
//! This crate owns what a JWT access token *is* (RFC 9068 claims, scopes, the
//! JWK format of the keys that sign it) and how a resource server decides whether
//! to believe one ([`Verifier`]). It does no I/O and knows nothing of gRPC, HTTP or
//! SQL; time comes in through a [`Clock`] so every rule about expiry can be tested
//! by moving time rather than waiting for it.
//!
//! Only the verifying half lives here: the signer is the authorization server's
//! alone.
#![forbid(unsafe_code)]

mod claims;
mod clock;
pub mod dpop;
mod error;
mod jwk;
mod jws;
mod scope;
pub mod secret;
pub mod txn;
mod verified;
mod verifier;

pub use claims::{
    AccessTokenClaims, Actor, Audience, Confirmation, JWT_ACCESS_TOKEN_TYPE, certificate_thumbprint,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::OAuthError;
pub use jwk::{Jwk, JwkSet, KeyAlgorithm, jwk_thumbprint};
pub use scope::{Scope, ScopeError};
pub use secret::Secret;
pub use txn::{TXN_TOKEN_METADATA, TXN_TOKEN_TYPE, TxnTokenClaims, TxnTokenError, TxnTokenPolicy};
pub use verified::{MAX_VERIFIED_TOKENS, VerifiedTokens};
pub use verifier::{KeySet, TokenError, Verifier, VerifierConfig};

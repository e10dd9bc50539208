//! The gRPC glue every Tollgate service shares.
//!
//! - [`auth`]: the tower layer that validates access tokens on every request and
//!   hands handlers a typed [`auth::AuthContext`].
//! - [`jwks`]: the background-refreshed cache of the authorization server's keys
//!   that the layer verifies against, so validation never does I/O.
//! - [`revocation`]: the local copy of the authorization server's denylist.
//! - [`protect`]: the token-validation settings and start-up every protected
//!   service shares.
//! - [`serve`]: serving a protected API with health, reflection and readiness.
//! - [`scaffold`]: a protected service's configuration, build, serve and `main`,
//!   so each service writes only what is its own.
//! - [`input`]: the checks on request fields that handlers share.
//! - [`status`]: the one mapping from [`tollgate_token::OAuthError`] to `tonic::Status`.
//! - [`tls`]: TLS and mutual TLS on every listener and outgoing connection,
//!   one configuration for every service, reloaded when its files change.
//! - `dev_ca` (feature `dev-ca`): a development CA and service certificates.
//! - [`db`]: opening and migrating a service's database (SQLite or PostgreSQL).
//! - [`telemetry`], [`shutdown`]: process plumbing.
//! - `testing` (feature `test-support`): the scope-table contract check and the
//!   both-backends runner for services' tests.
#![forbid(unsafe_code)]

pub mod auth;
pub mod balance;
pub mod db;
#[cfg(feature = "dev-ca")]
pub mod dev_ca;
pub mod input;
pub mod jwks;
pub mod limits;
pub mod probe;
pub mod protect;
pub mod revocation;
pub mod scaffold;
pub mod serve;
pub mod shutdown;
pub mod status;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod tls;
/// Logs, traces, metrics and audit events: the shared telemetry crate.
pub use tollgate_telemetry as telemetry;

/// gRPC server reflection (v1, and v1alpha for older tools such as some grpcurl
/// builds) over every Tollgate contract and health.
pub fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tollgate_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}

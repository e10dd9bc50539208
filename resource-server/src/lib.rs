//! The Tollgate resource server: the resource owners' profiles, and their notes
//! through the notes store behind it, as a gRPC API where each call is
//! authorised by an access token verified locally.
//!
//! - [`policy`]: which scope each method needs, in one table.
//! - [`api`]: the handlers, and the owner rule (nobody reaches another's data);
//!   how the shared scaffolding builds and routes them.
//! - [`downstream`]: calling the notes store with exchanged tokens (RFC 8693).
//! - [`storage`]: the profiles, over sqlx.
//! - [`Application`]: the shared scaffolding
//!   ([`tollgate_service_kit::scaffold`]) around the handlers: binds, wires the
//!   token guard, serves.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod downstream;
pub mod policy;
pub mod storage;

pub use config::Config;

/// A built resource server: database migrated, listener bound, token guard started.
pub type Application = tollgate_service_kit::scaffold::Application<api::Api>;

//! The Tollgate notes store: an internal microservice behind the resource
//! server. It accepts only tokens whose audience is itself, takes the owner
//! from the token's `sub`, and serves a user's notes only to a trusted service
//! acting for that user: with a token exchanged for it (RFC 8693, `act`), or
//! with its own token and a Transaction Token (docs/transaction-tokens.md).
//!
//! - [`policy`]: which scope each method needs.
//! - [`api`]: the handlers and the acting-party rule, and how the shared
//!   scaffolding builds and routes them.
//! - [`storage`]: the notes, over sqlx.
//! - [`ledger`]: the second internal hop: each change made within a
//!   transaction is recorded in the ledger, with the Txn-Token passed on.
//! - [`Application`]: the shared scaffolding
//!   ([`tollgate_service_kit::scaffold`]) around the handlers.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod ledger;
pub mod policy;
pub mod storage;

pub use config::Config;

/// A built notes store: database migrated, listener bound, token guard started.
pub type Application = tollgate_service_kit::scaffold::Application<api::Api>;

//! The Tollgate notes store: an internal microservice behind the resource
//! server. It accepts only tokens whose audience is itself (obtained by token
//! exchange, RFC 8693), takes the owner from the token's `sub`, and serves a
//! user's notes only to a trusted service acting for that user (`act`).
//!
//! - [`policy`]: which scope each method needs.
//! - [`api`]: the handlers and the acting-party rule, and how the shared
//!   scaffolding builds and routes them.
//! - [`storage`]: the notes, over sqlx.
//! - [`Application`]: the shared scaffolding
//!   ([`tollgate_service_kit::scaffold`]) around the handlers.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod policy;
pub mod storage;

pub use config::Config;

/// A built notes store: database migrated, listener bound, token guard started.
pub type Application = tollgate_service_kit::scaffold::Application<api::Api>;

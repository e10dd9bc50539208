//! The Tollgate ledger: an internal microservice two hops behind the resource
//! server (resource server → notes store → ledger). It records who changed
//! which note, in which transaction, and is reached only inside a
//! transaction: a Transaction Token in `txn-token`, beside the calling
//! workload's own access token (docs/transaction-tokens.md).
//!
//! It shows what per-hop token exchange would cost here and Txn-Tokens do
//! not: the notes store passes on the Txn-Token it received, unchanged, and
//! asks the authorization server for nothing on the user's behalf.
//!
//! - [`api`]: the handlers, the rule that every call is part of a transaction
//!   from a trusted workload, and the bounded in-memory record.
//! - [`Application`]: the shared scaffolding
//!   ([`tollgate_service_kit::scaffold`]) around the handlers.
#![forbid(unsafe_code)]

pub mod api;

/// The ledger's configuration.
pub type Config = tollgate_service_kit::scaffold::Config<api::Api>;

/// A built ledger: listener bound, token guard started.
pub type Application = tollgate_service_kit::scaffold::Application<api::Api>;

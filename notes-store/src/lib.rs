//! The Tollgate notes store: an internal microservice behind the resource
//! server. It accepts only tokens whose audience is itself (obtained by token
//! exchange, RFC 8693), takes the owner from the token's `sub`, and serves a
//! user's notes only to a trusted service acting for that user (`act`).
//!
//! - [`policy`]: which scope each method needs.
//! - [`api`]: the handlers and the acting-party rule.
//! - [`storage`]: the notes, over sqlx.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod policy;
pub mod storage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tollgate_proto::notes::v1::note_store_server::NoteStoreServer;
use tollgate_service_kit::serve::ProtectedListener;
use tollgate_token::Clock;

pub use config::Config;

/// A built notes store: database migrated, listener bound, token guard started.
pub struct Application {
    server: ProtectedListener,
    api: api::Api,
}

impl Application {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let storage = storage::NoteStorage::connect(&config.database_url()?)
            .await
            .context("opening the database")?;
        let server = ProtectedListener::bind(
            "notes-store",
            config.grpc_addr,
            &config.tokens,
            config::DEFAULT_AUDIENCE,
            policy::scope_policy(),
            clock.clone(),
        )
        .await?
        .with_drain(std::time::Duration::from_secs(config.shutdown_drain_secs));
        tracing::info!(addr = %server.addr(), trusted_actors = ?config.trusted_actors, "notes store bound");
        Ok(Self { server, api: api::Api::new(storage, clock, config.trusted_actors) })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The token guard's state: keys, denylist, access log. Test support only.
    #[cfg(feature = "test-support")]
    pub fn guard(&self) -> &tollgate_service_kit::protect::TokenGuard {
        self.server.guard()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let api = self.api;
        self.server.serve(shutdown, |router| router.add_service(NoteStoreServer::new(api))).await
    }
}

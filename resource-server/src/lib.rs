//! The Tollgate resource server: the resource owners' profiles, and their notes
//! through the notes store behind it, as a gRPC API where each call is
//! authorised by an access token verified locally.
//!
//! - [`policy`]: which scope each method needs, in one table.
//! - [`api`]: the handlers, and the owner rule (nobody reaches another's data).
//! - [`downstream`]: calling the notes store with exchanged tokens (RFC 8693).
//! - [`storage`]: the profiles, over sqlx.
//! - [`Application`]: binds, wires the token guard, serves.
#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod downstream;
pub mod policy;
pub mod storage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tollgate_proto::resource::v1::notes_service_server::NotesServiceServer;
use tollgate_proto::resource::v1::profile_service_server::ProfileServiceServer;
use tollgate_proto::resource::v1::report_service_server::ReportServiceServer;
use tollgate_service_kit::serve::ProtectedListener;
use tollgate_token::Clock;

pub use config::Config;

/// A built resource server: database migrated, listener bound, token guard started.
pub struct Application {
    server: ProtectedListener,
    api: api::Api,
}

impl Application {
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = storage::ResourceStore::connect(&config.database_url()?)
            .await
            .context("opening the database")?;
        let server = ProtectedListener::bind(
            "resource-server",
            config.grpc_addr,
            &config.tokens,
            config::DEFAULT_AUDIENCE,
            policy::scope_policy(),
            clock.clone(),
        )
        .await?
        .with_drain(std::time::Duration::from_secs(config.shutdown_drain_secs));
        let notes = downstream::NotesBackend::new(
            &config.notes_store_url,
            &config.tokens.auth_grpc_url,
            config.tokens.credentials(),
            config.notes_store_audience.clone(),
            clock.clone(),
        )?;
        tracing::info!(
            addr = %server.addr(), issuer = %config.tokens.issuer,
            audience = config.tokens.audience_or(config::DEFAULT_AUDIENCE),
            "resource server bound"
        );
        Ok(Self { server, api: api::Api::new(store, notes, clock) })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The token guard's state: keys, denylist, access log. Test support only.
    #[cfg(feature = "test-support")]
    pub fn guard(&self) -> &tollgate_service_kit::protect::TokenGuard {
        self.server.guard()
    }

    /// Serves until `shutdown` resolves (see
    /// [`tollgate_service_kit::serve::serve_protected`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let api = self.api;
        self.server
            .serve(shutdown, |router| {
                router
                    .add_service(ProfileServiceServer::new(api.clone()))
                    .add_service(NotesServiceServer::new(api.clone()))
                    .add_service(ReportServiceServer::new(api))
            })
            .await
    }
}

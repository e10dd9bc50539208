//! The notes store's configuration: read once at start-up, typed, passed down.

use std::net::SocketAddr;
use std::path::PathBuf;

use tollgate_service_kit::protect::TokenValidationConfig;
use tollgate_service_kit::telemetry::LogFormat;

/// This service's identifier: the `aud` of the (exchanged) tokens it accepts.
pub const DEFAULT_AUDIENCE: &str = "tollgate-notes-store";
/// The services allowed to act for users here.
pub const DEFAULT_TRUSTED_ACTOR: &str = "tollgate-resource";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the gRPC listener. Port 0 picks a free port.
    #[arg(long, env = "NS_GRPC_ADDR", default_value = "127.0.0.1:50053")]
    pub grpc_addr: SocketAddr,
    /// Where the embedded SQLite database lives (created if missing).
    #[arg(long, env = "NS_DATA_DIR", default_value = "data/notes-store")]
    pub data_dir: PathBuf,
    /// A database URL (`sqlite://…` or `postgres://…`); overrides --data-dir.
    #[arg(long, env = "NS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A service (client id) allowed to act for users here (RFC 8693 `act.sub`).
    #[arg(long = "trusted-actor", env = "NS_TRUSTED_ACTORS", value_delimiter = ',', default_value = DEFAULT_TRUSTED_ACTOR)]
    pub trusted_actors: Vec<String>,
    #[command(flatten)]
    pub tokens: TokenValidationConfig,
    /// On SIGTERM, seconds to keep serving with health NOT_SERVING before the
    /// listener closes, so load balancers stop routing here first. Calls in
    /// flight then finish either way.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECS", default_value_t = 0)]
    pub shutdown_drain_secs: u64,
    #[command(flatten)]
    pub telemetry: tollgate_service_kit::telemetry::TelemetryConfig,
    /// Log format.
    #[arg(long, env = "NS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// Defaults with the data under `data_dir`, a free loopback port, and tokens
    /// expected from `issuer`. Built here, not parsed (tests and embedding).
    pub fn local(data_dir: impl Into<PathBuf>, issuer: impl Into<String>) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            database_url: None,
            trusted_actors: vec![DEFAULT_TRUSTED_ACTOR.into()],
            tokens: TokenValidationConfig::new(issuer),
            log_format: LogFormat::Text,
            shutdown_drain_secs: 0,
            telemetry: Default::default(),
        }
    }

    pub fn database_url(&self) -> std::io::Result<String> {
        tollgate_service_kit::db::database_url(
            self.database_url.as_deref(),
            &self.data_dir,
            "notes.db",
        )
    }
}

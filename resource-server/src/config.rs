//! The resource server's configuration: read once at start-up, typed, passed down.

use std::net::SocketAddr;
use std::path::PathBuf;

use tollgate_service_kit::protect::TokenValidationConfig;
use tollgate_service_kit::telemetry::LogFormat;

/// This API's identifier: the `aud` of the tokens it accepts, and its client id
/// at the authorization server.
pub const DEFAULT_AUDIENCE: &str = "tollgate-resource";
pub const DEFAULT_NOTES_STORE_URL: &str = "http://127.0.0.1:50053";
pub const DEFAULT_NOTES_STORE_AUDIENCE: &str = "tollgate-notes-store";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the gRPC listener. Port 0 picks a free port.
    #[arg(long, env = "RS_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub grpc_addr: SocketAddr,
    /// Where the embedded SQLite database lives (created if missing).
    #[arg(long, env = "RS_DATA_DIR", default_value = "data/resource-server")]
    pub data_dir: PathBuf,
    /// A database URL (`sqlite://…` or `postgres://…`); overrides --data-dir.
    #[arg(long, env = "RS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The notes store (the internal service holding the notes).
    #[arg(long, env = "RS_NOTES_STORE_URL", default_value = DEFAULT_NOTES_STORE_URL)]
    pub notes_store_url: String,
    /// The notes store's audience: what user tokens are exchanged for.
    #[arg(long, env = "RS_NOTES_STORE_AUDIENCE", default_value = DEFAULT_NOTES_STORE_AUDIENCE)]
    pub notes_store_audience: String,
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
    #[arg(long, env = "RS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// Defaults with the data under `data_dir`, a free loopback port, and tokens
    /// expected from `issuer`. For tests and embedding: built here, not parsed, so
    /// no variable in the environment can change it.
    pub fn local(data_dir: impl Into<PathBuf>, issuer: impl Into<String>) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            database_url: None,
            notes_store_url: DEFAULT_NOTES_STORE_URL.into(),
            notes_store_audience: DEFAULT_NOTES_STORE_AUDIENCE.into(),
            tokens: TokenValidationConfig::new(issuer),
            log_format: LogFormat::Text,
            shutdown_drain_secs: 0,
            telemetry: Default::default(),
        }
    }

    /// The database to open; the embedded default's directory is created here.
    pub fn database_url(&self) -> std::io::Result<String> {
        tollgate_service_kit::db::database_url(
            self.database_url.as_deref(),
            &self.data_dir,
            "resource.db",
        )
    }
}

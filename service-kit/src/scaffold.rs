//! The scaffolding every protected service is built from: its configuration,
//! how it is built and served, and its `main`. A service supplies only what is
//! its own, by implementing [`ProtectedService`]: its [`ServiceSpec`] (name,
//! defaults, scope table), its own settings, its handlers and its routes.
//!
//! ```text
//! main ─ run_main::<S>() ─ parse Config<S> (defaults from S::SPEC)
//!                        ─ telemetry::init
//!                        ─ Application::<S>::build ─ S::build (database, handlers)
//!                        │                          ─ bind, start the token guard
//!                        ─ run_until_stopped(shutdown::signal())
//! ```
//!
//! Tests use the same [`Application`], with a [`Config::local`] and their own
//! clock and stop signal. docs/protect-a-service.md walks through a new service.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, FromArgMatches as _};
use tollgate_token::{Clock, SystemClock};

use crate::auth::ScopePolicy;
use crate::limits::GrpcLimits;
use crate::probe::{ProbeConfig, ProbeListener};
use crate::protect::TokenValidationConfig;
use crate::serve::{ProtectedListener, ProtectedRouter};
use crate::telemetry::{LogFormat, TelemetryConfig};
use crate::tls::TlsConfig;

/// What sets one protected service's scaffolding apart from another's: its
/// names, its defaults, and the scope table the auth layer enforces.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// The binary's name, and the service's in logs, spans and metrics.
    pub name: &'static str,
    /// The `aud` its tokens must carry unless `OAUTH_AUDIENCE` says otherwise:
    /// also its client id at the authorization server.
    pub audience: &'static str,
    /// The default of `--grpc-addr`.
    pub grpc_addr: &'static str,
    /// The default of `--data-dir`.
    pub data_dir: &'static str,
    /// The embedded SQLite database's file name under the data directory.
    pub database_file: &'static str,
    /// `(gRPC path, scope)` for every method it serves
    /// ([`ScopePolicy::for_api`]: health and reflection are open). A method
    /// missing here is refused to everyone.
    pub method_scopes: &'static [(&'static str, &'static str)],
}

impl ServiceSpec {
    /// Gives `command`'s `--grpc-addr` and `--data-dir` this service's
    /// defaults, so `--help` shows them. ([`ServiceConfig`] cannot: a derive's
    /// defaults are the same for every service that flattens it.)
    pub fn apply(&self, command: clap::Command) -> clap::Command {
        command
            .mut_arg("grpc_addr", |arg| arg.default_value(self.grpc_addr).required(false))
            .mut_arg("data_dir", |arg| arg.default_value(self.data_dir).required(false))
    }
}

/// The settings every protected service has, under the same names in each:
/// every service runs in its own environment, so the variables need no
/// per-service prefix. Flattened into [`Config`] beside the token-validation
/// settings and the service's own.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceConfig {
    /// Address of the gRPC listener. Port 0 picks a free port.
    #[arg(long, env = "GRPC_ADDR")]
    pub grpc_addr: SocketAddr,
    /// Where the embedded SQLite database lives (created if missing).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: PathBuf,
    /// A database URL (`sqlite://…` or `postgres://…`); overrides --data-dir.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// On SIGTERM, seconds to keep serving with health NOT_SERVING before the
    /// listener closes, so load balancers stop routing here first. Calls in
    /// flight then finish either way.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECS", default_value_t = 0)]
    pub shutdown_drain_secs: u64,
    #[command(flatten)]
    pub probe: ProbeConfig,
    #[command(flatten)]
    pub grpc_limits: GrpcLimits,
    #[command(flatten)]
    pub tls: TlsConfig,
    #[command(flatten)]
    pub telemetry: TelemetryConfig,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl ServiceConfig {
    /// A free loopback port, the data under `data_dir`, no drain, text logs.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.into(),
            database_url: None,
            shutdown_drain_secs: 0,
            probe: ProbeConfig::default(),
            grpc_limits: GrpcLimits::default(),
            tls: TlsConfig::default(),
            telemetry: TelemetryConfig::default(),
            log_format: LogFormat::Text,
        }
    }
}

/// A protected gRPC service: what the scaffolding needs from it. Implemented by
/// the service's handler type; see docs/protect-a-service.md.
pub trait ProtectedService: Clone + Debug + Send + Sync + Sized + 'static {
    /// Its names, defaults and scope table.
    const SPEC: ServiceSpec;
    /// Its own settings, flattened into [`Config`] beside the shared ones.
    /// `Default` gives what [`Config::local`] starts from.
    type Settings: clap::Args + Clone + Debug + Default + Send + Sync + 'static;

    /// Opens its storage ([`Config::open_database`]) and builds its handlers.
    /// Called before the listener is bound, so a failure here leaves nothing
    /// running.
    fn build(
        config: &Config<Self>,
        clock: Arc<dyn Clock>,
    ) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// Adds its gRPC services to `router`, behind the token guard, each with
    /// `limits.max_message_bytes` as its request size limit and
    /// [`crate::limits::MAX_RESPONSE_BYTES`] as its response size limit.
    fn routes(self, router: ProtectedRouter, limits: &GrpcLimits) -> ProtectedRouter;
}

/// A protected service's whole configuration: read once at start-up, typed,
/// passed down. Each service names it `Config` (`pub type Config =
/// scaffold::Config<Api>`).
#[derive(Debug, Clone, clap::Args)]
pub struct Config<S: ProtectedService> {
    #[command(flatten)]
    pub service: ServiceConfig,
    #[command(flatten)]
    pub tokens: TokenValidationConfig,
    #[command(flatten)]
    pub settings: S::Settings,
}

impl<S: ProtectedService> Config<S> {
    /// Defaults with the data under `data_dir`, a free loopback port, and tokens
    /// expected from `issuer`. For tests and embedding: built here, not parsed,
    /// so no variable in the environment can change it.
    pub fn local(data_dir: impl Into<PathBuf>, issuer: impl Into<String>) -> Self {
        Self {
            service: ServiceConfig::local(data_dir),
            tokens: TokenValidationConfig::new(issuer),
            settings: S::Settings::default(),
        }
    }

    /// The command line (and environment) this configuration is parsed from,
    /// with the service's defaults.
    pub fn command() -> clap::Command {
        S::SPEC.apply(Self::augment_args(clap::Command::new(S::SPEC.name)))
    }

    /// The database to open; the embedded default's directory is created here.
    pub fn database_url(&self) -> std::io::Result<String> {
        crate::db::database_url(
            self.service.database_url.as_deref(),
            &self.service.data_dir,
            S::SPEC.database_file,
        )
    }

    /// Opens the service's database with `connect`, its store's constructor
    /// (which applies the store's migrations).
    pub async fn open_database<T>(
        &self,
        connect: impl AsyncFnOnce(&str) -> Result<T, sqlx::Error>,
    ) -> anyhow::Result<T> {
        let url = self.database_url()?;
        connect(&url).await.context("opening the database")
    }

    /// The `aud` this service's tokens must carry.
    pub fn audience(&self) -> &str {
        self.tokens.audience_or(S::SPEC.audience)
    }
}

/// A built protected service: storage open, handlers built, listener bound,
/// token guard started. Each service names it `Application`.
pub struct Application<S> {
    listener: ProtectedListener,
    service: S,
}

impl<S: ProtectedService> Application<S> {
    pub async fn build(config: Config<S>, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let service = S::build(&config, clock.clone()).await?;
        let listener = ProtectedListener::bind(
            S::SPEC.name,
            config.service.grpc_addr,
            &config.tokens,
            S::SPEC.audience,
            ScopePolicy::for_api(S::SPEC.method_scopes),
            clock,
            &config.service.tls,
        )
        .await?
        .with_drain(std::time::Duration::from_secs(config.service.shutdown_drain_secs))
        .with_limits(config.service.grpc_limits.clone())
        .with_probe(ProbeListener::bind(&config.service.probe).await?);
        tracing::info!(
            service = S::SPEC.name, addr = %listener.addr(), issuer = %config.tokens.issuer,
            audience = config.audience(), tls = listener.tls().is_some(), "gRPC listener bound"
        );
        Ok(Self { listener, service })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// The probe listener's address, with `PROBE_ADDR` ([`crate::probe`]).
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.listener.probe_addr()
    }

    /// The token guard's state: keys, denylist, access log. Test support only.
    #[cfg(feature = "test-support")]
    pub fn guard(&self) -> &crate::protect::TokenGuard {
        self.listener.guard()
    }

    /// The benchmark's baseline: the same service with every protected call
    /// admitted as `caller` and no token checked. Only with the `bench`
    /// feature; docs/performance.md.
    #[cfg(feature = "bench")]
    pub fn without_token_checks(mut self, caller: crate::auth::AuthContext) -> Self {
        self.listener = self.listener.without_token_checks(caller);
        self
    }

    /// Serves until `shutdown` resolves (see [`crate::serve::serve_protected`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = self.service;
        self.listener.serve(shutdown, |router, limits| service.routes(router, limits)).await
    }
}

/// A protected service's whole `main`: reads the configuration from the
/// command line and environment, starts telemetry, builds the service and
/// serves it until SIGTERM or Ctrl-C.
pub async fn run_main<S: ProtectedService>(
    version: &'static str,
    about: &'static str,
) -> anyhow::Result<()> {
    let mut command = Config::<S>::command().version(version).about(about);
    let matches = command.get_matches_mut();
    let config = Config::<S>::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
    let _telemetry = crate::telemetry::init(
        S::SPEC.name,
        config.service.log_format,
        &config.service.telemetry,
        "info,sqlx=warn",
    );
    let app = Application::<S>::build(config, Arc::new(SystemClock)).await?;
    app.run_until_stopped(crate::shutdown::signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service with one setting of its own, for the configuration's tests.
    #[derive(Debug, Clone)]
    struct Echo;

    #[derive(Debug, Clone, Default, clap::Args)]
    struct EchoSettings {
        /// How loud.
        #[arg(long, env = "ECHO_VOLUME")]
        volume: Option<u8>,
    }

    impl ProtectedService for Echo {
        const SPEC: ServiceSpec = ServiceSpec {
            name: "echo",
            audience: "tollgate-echo",
            grpc_addr: "127.0.0.1:50099",
            data_dir: "data/echo",
            database_file: "echo.db",
            method_scopes: &[],
        };
        type Settings = EchoSettings;

        async fn build(_: &Config<Self>, _: Arc<dyn Clock>) -> anyhow::Result<Self> {
            Ok(Self)
        }

        fn routes(self, router: ProtectedRouter, _: &GrpcLimits) -> ProtectedRouter {
            router
        }
    }

    #[test]
    fn the_command_line_carries_the_service_defaults_and_shared_names() {
        let mut command = Config::<Echo>::command();
        command.build();
        let help = command.render_long_help().to_string();
        for expected in [
            "[env: GRPC_ADDR=]",
            "[default: 127.0.0.1:50099]",
            "[env: DATA_DIR=]",
            "[default: data/echo]",
            "[env: DATABASE_URL=]",
            "[env: LOG_FORMAT=]",
            "[env: SHUTDOWN_DRAIN_SECS=]",
            "[env: OAUTH_ISSUER=]",
            "[env: ECHO_VOLUME=]",
        ] {
            assert!(help.contains(expected), "{expected} missing from:\n{help}");
        }
        // Parsed with the environment left out: only the defaults and arguments.
        let matches = Config::<Echo>::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(["echo", "--volume", "7", "--grpc-addr", "0.0.0.0:1"])
            .unwrap();
        let config = Config::<Echo>::from_arg_matches(&matches).unwrap();
        assert_eq!(config.service.grpc_addr, SocketAddr::from(([0, 0, 0, 0], 1)));
        assert_eq!(config.service.data_dir, PathBuf::from("data/echo"));
        assert_eq!(config.settings.volume, Some(7));
        assert_eq!(config.audience(), "tollgate-echo");
    }

    #[test]
    fn a_local_config_listens_on_a_free_port_under_its_data_dir() {
        let config = Config::<Echo>::local("/tmp/x", "http://issuer");
        assert_eq!(config.service.grpc_addr.port(), 0);
        assert_eq!(config.settings.volume, None);
        assert_eq!(config.tokens.issuer, "http://issuer");
    }
}

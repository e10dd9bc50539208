//! The Tollgate authorization server.
//!
//! - [`domain`]: the OAuth protocol core (grants, PKCE, codes, refresh rotation,
//!   signing keys), free of transport and storage.
//! - [`storage`]: narrow traits the core needs, and their sqlx implementation.
//! - [`http`], [`grpc`]: thin adapters from the wire to the core.
//! - [`Application`]: binds the listeners and runs them; `main` and the tests
//!   both start the server through it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod bootstrap;
pub mod config;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod storage;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum_extra::extract::cookie::Key;
use base64::Engine as _;
use tokio::net::TcpListener;
use tollgate_proto::auth::v1::revocation_list_service_server::RevocationListServiceServer;
use tollgate_proto::auth::v1::token_service_server::TokenServiceServer;
use tollgate_service_kit::tls::{Listener, ServerTls, tls_incoming};
use tollgate_token::Clock;

pub use config::Config;
use domain::dpop::NonceKey;
use domain::keys::KeyRing;
use domain::{OAuthCore, OAuthSettings};
use storage::SqlStore;

/// A built authorization server: listeners bound, storage migrated, keys loaded.
pub struct Application {
    http_listener: TcpListener,
    grpc_listener: TcpListener,
    probe_listener: Option<tollgate_service_kit::probe::ProbeListener>,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    issuer: String,
    /// What a DPoP proof sent to the gRPC token service names as its origin.
    grpc_dpop_origin: String,
    core: Arc<OAuthCore<SqlStore>>,
    cookie_key: Key,
    key_check: std::time::Duration,
    /// How often, and with what retention (seconds), expired records are
    /// purged; `None` when the schedule is off.
    purge: Option<(std::time::Duration, i64)>,
    /// How long to keep serving, health NOT_SERVING, once told to stop.
    drain: std::time::Duration,
    http_tls: Option<ServerTls>,
    grpc_tls: Option<ServerTls>,
    /// A client CA is configured: the listeners take client certificates.
    client_certificates: bool,
    http_limits: http::serve::HttpLimits,
    grpc_limits: tollgate_service_kit::limits::GrpcLimits,
}

/// RFC 8414 §2: the issuer is an https (here also http, for development) URL with
/// no query or fragment. The endpoints are served at the root, so the issuer must
/// be an origin: no path, not even a trailing slash, since clients compare it
/// byte for byte (RFC 8414 §3.3, RFC 9207 §2.4).
fn check_issuer(issuer: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(issuer).with_context(|| format!("issuer {issuer:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(url.scheme(), "https" | "http")
            && url.path() == "/"
            && !issuer.ends_with('/')
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty(),
        "issuer {issuer:?} must be a bare origin such as https://auth.example.com"
    );
    Ok(())
}

impl Application {
    /// Opens the database (migrating it), applies the bootstrap file, loads or
    /// creates the signing key, and binds both listeners (port 0 picks a free one).
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store =
            SqlStore::connect(&config.database_url()?).await.context("opening the database")?;
        if let Some(path) = &config.bootstrap {
            let file = bootstrap::BootstrapFile::load(path)?;
            bootstrap::apply(&file, &store, &config.default_audience, clock.now()).await?;
        }
        let keys = KeyRing::load_or_create(
            &store,
            config.signing_alg.into(),
            config.rotation_policy(),
            clock.now(),
        )
        .await
        .context("loading the signing keys")?;

        let http_listener = TcpListener::bind(config.http_addr).await.context("binding HTTP")?;
        let grpc_listener = TcpListener::bind(config.grpc_addr).await.context("binding gRPC")?;
        let http_addr = http_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;
        let probe_listener =
            tollgate_service_kit::probe::ProbeListener::bind(&config.probe).await?;
        let http_tls = ServerTls::from_config(&config.tls, Listener::PublicHttp)
            .context("loading TLS_* for HTTP")?;
        let grpc_tls = ServerTls::from_config(&config.tls, Listener::Grpc)
            .context("loading TLS_* for gRPC")?;
        let scheme = if http_tls.is_some() { "https" } else { "http" };
        let issuer = config.issuer.clone().unwrap_or_else(|| format!("{scheme}://{http_addr}"));
        check_issuer(&issuer)?;
        // Configured, or the bound address; never the `:authority` a call
        // claims (docs/dpop-grpc.md, "The origin, and proxies").
        let grpc_scheme = if grpc_tls.is_some() { "https" } else { "http" };
        let grpc_dpop_origin = match &config.grpc_dpop_origin {
            Some(origin) => tollgate_service_kit::protect::dpop_origin(origin).with_context(|| {
                format!(
                    "AUTH_GRPC_DPOP_ORIGIN ({origin:?}) must be an origin: http:// or https://, \
                     a host and an optional port, nothing after it"
                )
            })?,
            None => {
                if grpc_addr.ip().is_unspecified() {
                    tracing::warn!(
                        %grpc_addr,
                        "AUTH_GRPC_DPOP_ORIGIN is not set and the gRPC listener has no one \
                         address: DPoP proofs to the gRPC token service must name \
                         {grpc_scheme}://{grpc_addr}, which no client calls; set \
                         AUTH_GRPC_DPOP_ORIGIN to the URL clients use"
                    );
                }
                format!("{grpc_scheme}://{grpc_addr}")
            }
        };
        let cookie_key = match &config.cookie_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading cookie key {}", path.display()))?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    .context("cookie key must be base64")?;
                Key::try_from(bytes.as_slice()).context("cookie key must be at least 64 bytes")?
            }
            None => Key::generate(),
        };
        anyhow::ensure!(
            (1..=tollgate_token::txn::MAX_TXN_TOKEN_LIFETIME_SECS)
                .contains(&config.txn_token_ttl_secs),
            "AUTH_TXN_TOKEN_TTL must be 1 to {} seconds",
            tollgate_token::txn::MAX_TXN_TOKEN_LIFETIME_SECS
        );
        anyhow::ensure!(!config.txn_trust_domain.is_empty(), "AUTH_TXN_TRUST_DOMAIN is empty");
        let settings = OAuthSettings {
            issuer: issuer.clone(),
            access_token_ttl_secs: config.access_token_ttl_secs,
            txn_trust_domain: config.txn_trust_domain.clone(),
            txn_token_ttl_secs: config.txn_token_ttl_secs,
            refresh_token_ttl_secs: config.refresh_token_ttl_secs,
            grant_max_lifetime_secs: config.grant_max_lifetime_secs,
            code_ttl_secs: config.code_ttl_secs,
            refresh_reuse_grace_secs: config.refresh_reuse_grace_secs,
            device_code_ttl_secs: config.device_code_ttl_secs,
            device_poll_interval_secs: 5,
            hash_limits: config.hash_limits(),
            throttles: config.limits.throttles().map_err(anyhow::Error::msg)?,
            max_pending_device_codes: config.limits.max_pending_device_codes,
            dpop_nonces: config.dpop_nonce.then(|| NonceKey::derive(cookie_key.master())),
        };
        let core = Arc::new(OAuthCore::new(store, Arc::new(keys), clock, settings));
        tracing::info!(
            %issuer, %http_addr, %grpc_addr, tls = http_tls.is_some(),
            mutual_tls = config.tls.client_ca.is_some(), "authorization server ready"
        );
        Ok(Self {
            http_listener,
            grpc_listener,
            probe_listener,
            http_addr,
            grpc_addr,
            issuer,
            grpc_dpop_origin,
            core,
            cookie_key,
            key_check: std::time::Duration::from_secs(config.key_check_secs.max(1)),
            purge: (config.purge_interval_secs > 0).then(|| {
                (
                    std::time::Duration::from_secs(config.purge_interval_secs),
                    config.purge_retention_secs,
                )
            }),
            drain: std::time::Duration::from_secs(config.shutdown_drain_secs),
            http_tls,
            grpc_tls,
            client_certificates: config.tls.client_ca.is_some(),
            http_limits: config.limits.http(),
            grpc_limits: config.grpc_limits.clone(),
        })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The probe listener's address, with `PROBE_ADDR`
    /// ([`tollgate_service_kit::probe`]).
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        self.probe_listener.as_ref().and_then(|probe| probe.addr().ok())
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The protocol core, for embedding and tests (e.g. rotating keys on demand).
    pub fn core(&self) -> Arc<OAuthCore<SqlStore>> {
        self.core.clone()
    }

    /// Serves until `shutdown` resolves. Health turns NOT_SERVING first, then both
    /// listeners stop accepting and let in-flight requests finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<TokenServiceServer<grpc::TokenGrpc>>().await;
        health_reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let reflection = tollgate_service_kit::reflection()?;

        let probe_reporter = health_reporter.clone();
        let stopping = tollgate_service_kit::shutdown::stop_sequence(
            shutdown,
            health_reporter,
            vec![<TokenServiceServer<grpc::TokenGrpc> as tonic::server::NamedService>::NAME],
            self.drain,
        );

        let probe = match self.probe_listener {
            Some(probe) => {
                Some(probe.serve(&probe_reporter, stopping.clone().listeners_close()).await)
            }
            None => None,
        };

        // Keys: re-read (other replicas, the admin command) and rotated on schedule.
        let core = self.core.clone();
        let key_check = self.key_check;
        let keys_task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(key_check);
            loop {
                ticker.tick().await;
                if let Err(err) = core.signer().rotate_if_due(core.store(), core.now()).await {
                    tracing::error!(error = %err, "signing key check failed");
                }
            }
        });

        // Expired records: deleted on schedule, so the tables hold what is live.
        let purge_task = self.purge.map(|(every, retention)| {
            let core = self.core.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(every);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    // Failures are logged by the span; the next tick retries.
                    let _ = core.purge_expired(retention).await;
                }
            })
        });

        let router = http::router(
            http::HttpState {
                core: self.core.clone(),
                cookie_key: self.cookie_key,
                client_certificates: self.client_certificates,
            },
            &self.http_limits,
        );
        let http = http::serve::serve(
            self.http_listener,
            self.http_tls,
            router,
            self.http_limits,
            stopping.clone().listeners_close(),
        );
        let (request_bytes, response_bytes) =
            (self.grpc_limits.max_message_bytes, tollgate_service_kit::limits::MAX_RESPONSE_BYTES);
        let grpc_router = self
            .grpc_limits
            .server()
            .layer(tollgate_telemetry::propagation::TraceLayer::new(
                "auth-server",
                tollgate_telemetry::propagation::Protocol::Grpc,
            ))
            .add_service(health_service)
            .add_service(reflection.0)
            .add_service(reflection.1)
            .add_service(
                TokenServiceServer::new(grpc::TokenGrpc::new(
                    self.core.clone(),
                    &self.grpc_dpop_origin,
                ))
                .max_decoding_message_size(request_bytes)
                .max_encoding_message_size(response_bytes),
            )
            .add_service(
                RevocationListServiceServer::new(grpc::TokenGrpc::new(
                    self.core,
                    &self.grpc_dpop_origin,
                ))
                .max_decoding_message_size(request_bytes)
                .max_encoding_message_size(response_bytes),
            );
        let incoming = tollgate_service_kit::limits::limited_incoming(
            self.grpc_listener,
            self.grpc_limits.max_connections,
        );
        let close = stopping.listeners_close();
        let grpc = async move {
            match self.grpc_tls {
                None => grpc_router.serve_with_incoming_shutdown(incoming, close).await,
                Some(tls) => {
                    grpc_router
                        .serve_with_incoming_shutdown(tls_incoming(incoming, tls), close)
                        .await
                }
            }
        };
        let (http, grpc) = tokio::join!(http, grpc);
        if let Some(probe) = probe {
            probe.abort();
        }
        keys_task.abort();
        if let Some(task) = purge_task {
            task.abort();
        }
        http.context("HTTP server")?;
        grpc.context("gRPC server")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::check_issuer;

    #[test]
    fn the_issuer_must_be_a_bare_origin() {
        assert!(check_issuer("https://auth.example.com").is_ok());
        assert!(check_issuer("http://127.0.0.1:8080").is_ok());
        for bad in [
            "https://auth.example.com/",
            "https://auth.example.com/tenant",
            "https://auth.example.com?x=1",
            "https://auth.example.com#f",
            "ftp://auth.example.com",
            "auth.example.com",
        ] {
            assert!(check_issuer(bad).is_err(), "{bad}");
        }
    }
}

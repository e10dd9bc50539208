//! Everything a service needs to accept access tokens, configured once and
//! started once: the verifier settings, the JWKS cache, the revocation denylist
//! and the auth layer over them. Every protected Tollgate service flattens
//! [`TokenValidationConfig`] into its own configuration and starts a
//! [`TokenGuard`] from it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tollgate_token::{Clock, Verifier, VerifierConfig};

use crate::auth::{AuthLayer, ScopePolicy};
use crate::jwks::{JwksCache, JwksConfig};
use crate::revocation::{Denylist, RevocationConfig};
use tollgate_token::Secret;

pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";
pub const DEFAULT_AUTH_GRPC_URL: &str = "http://127.0.0.1:50051";
pub const DEFAULT_LEEWAY: i64 = 30;
pub const DEFAULT_JWKS_REFRESH: u64 = 300;
pub const DEFAULT_JWKS_MIN_REFETCH: u64 = 10;
pub const DEFAULT_JWKS_MAX_STALENESS: u64 = 3600;
/// How often the denylist of revoked access tokens is fetched: the bound on how
/// long a revoked token keeps working at a service.
pub const DEFAULT_REVOCATION_SYNC: u64 = 5;

/// How a service validates access tokens. The environment variables are the
/// same for every service (`OAUTH_*`): each service runs in its own environment.
#[derive(Debug, Clone, clap::Args)]
pub struct TokenValidationConfig {
    /// The authorization server's issuer identifier; tokens must carry it as `iss`.
    #[arg(long, env = "OAUTH_ISSUER", default_value = DEFAULT_ISSUER)]
    pub issuer: String,
    /// Where to fetch the signing keys. Defaults to `<issuer>/jwks.json`.
    #[arg(long, env = "OAUTH_JWKS_URI")]
    pub jwks_uri: Option<String>,
    /// This service's identifier: tokens must name it in `aud` (RFC 9068 §4).
    /// Each service has its own default.
    #[arg(long, env = "OAUTH_AUDIENCE")]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds.
    #[arg(long, env = "OAUTH_LEEWAY", default_value_t = DEFAULT_LEEWAY)]
    pub leeway_secs: i64,
    /// How often the signing keys are refetched, seconds.
    #[arg(long, env = "OAUTH_JWKS_REFRESH", default_value_t = DEFAULT_JWKS_REFRESH)]
    pub jwks_refresh_secs: u64,
    /// The least time between two key fetches (also for unknown `kid`s), seconds.
    #[arg(long, env = "OAUTH_JWKS_MIN_REFETCH", default_value_t = DEFAULT_JWKS_MIN_REFETCH)]
    pub jwks_min_refetch_secs: u64,
    /// The authorization server's gRPC endpoint (revocation denylist, token exchange).
    #[arg(long, env = "OAUTH_AUTH_GRPC_URL", default_value = DEFAULT_AUTH_GRPC_URL)]
    pub auth_grpc_url: String,
    /// This service's client id at the authorization server. With the secret it
    /// enables the revocation denylist (and token exchange where used).
    #[arg(long, env = "OAUTH_CLIENT_ID")]
    pub client_id: Option<String>,
    /// This service's client secret (prefer the environment variable).
    #[arg(long, env = "OAUTH_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<Secret>,
    /// How old the signing keys may grow without a successful fetch before a
    /// token with an unknown `kid` is answered UNAVAILABLE instead of
    /// UNAUTHENTICATED, seconds.
    #[arg(long, env = "OAUTH_JWKS_MAX_STALENESS", default_value_t = DEFAULT_JWKS_MAX_STALENESS)]
    pub jwks_max_staleness_secs: u64,
    /// How often revoked access tokens are fetched, seconds.
    #[arg(long, env = "OAUTH_REVOCATION_SYNC", default_value_t = DEFAULT_REVOCATION_SYNC)]
    pub revocation_sync_secs: u64,
}

impl TokenValidationConfig {
    /// The defaults for tokens from `issuer`, built here rather than parsed so no
    /// environment variable can change them (tests and embedding).
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_uri: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY,
            jwks_refresh_secs: DEFAULT_JWKS_REFRESH,
            jwks_min_refetch_secs: DEFAULT_JWKS_MIN_REFETCH,
            jwks_max_staleness_secs: DEFAULT_JWKS_MAX_STALENESS,
            auth_grpc_url: DEFAULT_AUTH_GRPC_URL.into(),
            client_id: None,
            client_secret: None,
            revocation_sync_secs: DEFAULT_REVOCATION_SYNC,
        }
    }

    pub fn audience_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.audience.as_deref().unwrap_or(default)
    }

    pub fn jwks(&self) -> JwksConfig {
        let uri = self
            .jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{}/jwks.json", self.issuer.trim_end_matches('/')));
        JwksConfig {
            refresh_interval: Duration::from_secs(self.jwks_refresh_secs),
            min_refetch_interval: Duration::from_secs(self.jwks_min_refetch_secs),
            max_staleness: Duration::from_secs(self.jwks_max_staleness_secs),
            ..JwksConfig::new(uri)
        }
    }

    pub fn verifier(&self, default_audience: &str) -> VerifierConfig {
        let mut verifier = VerifierConfig::new(&self.issuer, self.audience_or(default_audience));
        verifier.leeway_secs = self.leeway_secs;
        verifier
    }

    /// The service's own credentials at the authorization server, if configured.
    pub fn credentials(&self) -> Option<(String, Secret)> {
        Some((self.client_id.clone()?, self.client_secret.clone()?))
    }

    /// The denylist sync, if this service has credentials.
    pub fn revocation(&self) -> Option<RevocationConfig> {
        let (client_id, client_secret) = self.credentials()?;
        Some(RevocationConfig {
            auth_grpc_url: self.auth_grpc_url.clone(),
            client_id,
            client_secret,
            interval: Duration::from_secs(self.revocation_sync_secs.max(1)),
        })
    }
}

/// A started token guard: the layer to put in front of the service, and the
/// background state it reads.
#[derive(Debug)]
pub struct TokenGuard {
    pub layer: AuthLayer,
    pub jwks: JwksCache,
    pub denylist: Denylist,
    /// Every admitted call's [`AuthContext`], for tests. Test support only.
    #[cfg(feature = "test-support")]
    pub access_log: tokio::sync::broadcast::Sender<crate::auth::AuthContext>,
    tasks: Vec<JoinHandle<()>>,
    /// The protected service's name (spans, metrics).
    pub service: &'static str,
}

impl TokenGuard {
    /// Starts the JWKS cache and (with credentials) the denylist sync, and builds
    /// the auth layer enforcing `policy` for tokens whose `aud` is the configured
    /// audience or `default_audience`.
    pub fn start(
        service: &'static str,
        config: &TokenValidationConfig,
        default_audience: &str,
        policy: ScopePolicy,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, tonic::transport::Error> {
        let (jwks, jwks_task) = JwksCache::spawn(config.jwks(), clock.clone());
        let mut tasks = vec![jwks_task];
        let denylist = match config.revocation() {
            Some(revocation) => {
                let (denylist, task) = Denylist::spawn(revocation)?;
                tasks.push(task);
                denylist
            }
            None => {
                tracing::warn!(
                    "no client credentials (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET): revoked \
                     access tokens stay usable here until they expire"
                );
                Denylist::fixed([])
            }
        };
        let layer = AuthLayer::new(
            Verifier::new(config.verifier(default_audience)),
            jwks.clone(),
            policy,
            clock,
        )
        .with_denylist(denylist.clone())
        .with_service(service);
        #[cfg(feature = "test-support")]
        let (layer, access_log) = {
            let (access_log, _) = tokio::sync::broadcast::channel(256);
            (layer.with_access_log(access_log.clone()), access_log)
        };
        Ok(Self {
            layer,
            jwks,
            denylist,
            #[cfg(feature = "test-support")]
            access_log,
            tasks,
            service,
        })
    }

    /// Stops the background tasks.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

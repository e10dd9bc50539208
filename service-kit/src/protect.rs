//! Everything a service needs to accept access tokens, configured once and
//! started once: the verifier settings, the JWKS cache, the revocation denylist
//! and the auth layer over them. Every protected Tollgate service flattens
//! [`TokenValidationConfig`] into its own configuration and starts a
//! [`TokenGuard`] from it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tollgate_token::{Clock, Verifier, VerifierConfig};

use crate::auth::{AuthLayer, ScopePolicy, TxnCheck};
use crate::jwks::{JwksCache, JwksConfig};
use crate::revocation::{Denylist, RevocationConfig};
use crate::tls::ClientTls;
use tollgate_token::Secret;
use tollgate_token::TxnTokenPolicy;

pub const DEFAULT_ISSUER: &str = "http://127.0.0.1:8080";
pub const DEFAULT_AUTH_GRPC_URL: &str = "http://127.0.0.1:50051";
pub const DEFAULT_LEEWAY: i64 = 30;
pub const DEFAULT_JWKS_REFRESH: u64 = 300;
pub const DEFAULT_JWKS_MIN_REFETCH: u64 = 10;
pub const DEFAULT_JWKS_MAX_STALENESS: u64 = 3600;
/// How often the denylist of revoked access tokens is fetched: the bound on how
/// long a revoked token keeps working at a service.
pub const DEFAULT_REVOCATION_SYNC: u64 = 5;
/// How long a service relies on its denylist without a successful sync before
/// it refuses protected calls (`UNAVAILABLE`) and reports NOT_SERVING.
///
/// 120 s is 24 sync intervals: it rides out an authorization server restart,
/// a rolling deploy or a database blip of a minute or so without refusing
/// anyone, and it is well under the 300 s access-token lifetime, so a
/// revocation the service cannot learn about is not left unenforced for most
/// of a token's life. (Without the bound, that window is the token's whole
/// remaining lifetime, and a partitioned service would never say so.)
pub const DEFAULT_REVOCATION_MAX_STALENESS: u64 = 120;

/// A token-validation setting that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "OAUTH_REVOCATION_MAX_STALENESS ({max_staleness} s) must be larger than \
         OAUTH_REVOCATION_SYNC ({interval} s): every list would be stale before the next \
         sync could refresh it"
    )]
    StalenessNotAboveSync { max_staleness: u64, interval: u64 },
    #[error(
        "OAUTH_LEEWAY ({0} s) must be at most {MAX_LEEWAY} s: the authorization server keeps a \
         revoked token on the denylist that long past its exp, and no longer"
    )]
    LeewayTooLong(i64),
    #[error(
        "OAUTH_CLIENT_ID without OAUTH_CLIENT_SECRET authenticates with the TLS client \
         certificate (RFC 8705 tls_client_auth): it needs TLS_CERT and an https:// \
         OAUTH_AUTH_GRPC_URL"
    )]
    NoClientAuthentication,
    #[error(
        "OAUTH_DPOP_ORIGIN ({0:?}) must be an origin, http:// or https:// with a host and \
         optional port, nothing after it: the scheme and authority clients call this service at"
    )]
    DpopOrigin(String),
    #[error(
        "OAUTH_TXN_TRUST_DOMAIN needs OAUTH_TXN_REQUESTERS and OAUTH_TXN_CALLERS: the \
         workloads whose Txn-Tokens this service accepts, and those that may present them"
    )]
    NoTxnWorkloads,
}

/// `value` as a DPoP origin (docs/dpop-grpc.md): `scheme://authority` with an
/// `http` or `https` scheme, a host, and nothing after it; in the form the
/// URL parser spells it (lower-case scheme and host, no default port), which
/// is how a proof's `htu` is compared. `None` if it is not one.
pub fn dpop_origin(value: &str) -> Option<String> {
    let url = url::Url::parse(value).ok()?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.host().is_some()
        && url.path() == "/"
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && !value.trim_end_matches('/').ends_with(['?', '#']);
    bare.then(|| url.origin().ascii_serialization())
}

/// The most clock skew a service may tolerate on `exp`: the authorization
/// server keeps revoked tokens on the denylist this long past their `exp`
/// (`DENYLIST_LEEWAY_SECS` there), so a revoked token never works again within
/// a service's leeway.
pub const MAX_LEEWAY: i64 = 120;

/// Why the token guard could not start.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the authorization server's gRPC URL: {0}")]
    AuthGrpcUrl(#[from] crate::tls::TargetError),
}

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
    /// Without it, and with TLS_CERT, the service authenticates with its
    /// certificate (RFC 8705 tls_client_auth) and its tokens are bound to it.
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
    /// How long after the start of the last successful denylist sync the list
    /// is still relied on, seconds. Past it protected calls are refused
    /// UNAVAILABLE and health is NOT_SERVING until a sync succeeds. Must be
    /// larger than OAUTH_REVOCATION_SYNC.
    #[arg(
        long,
        env = "OAUTH_REVOCATION_MAX_STALENESS",
        default_value_t = DEFAULT_REVOCATION_MAX_STALENESS
    )]
    pub revocation_max_staleness_secs: u64,
    /// The origin (`https://host:port`) clients call this service at. With
    /// it, DPoP-bound access tokens (RFC 9449) are accepted with a proof
    /// made for this origin and the method's path (docs/dpop-grpc.md);
    /// without it they are refused. Behind a proxy, the origin the clients
    /// address, not this listener's.
    #[arg(long, env = "OAUTH_DPOP_ORIGIN")]
    pub dpop_origin: Option<String>,
    /// The trust domain (the authorization server's AUTH_TXN_TRUST_DOMAIN).
    /// With it, calls may carry a Transaction Token in the `txn-token`
    /// metadata entry beside the calling workload's own access token
    /// (docs/transaction-tokens.md); without it such calls are refused.
    #[arg(long, env = "OAUTH_TXN_TRUST_DOMAIN")]
    pub txn_trust_domain: Option<String>,
    /// The workloads (client ids) whose Txn-Tokens this service accepts:
    /// every workload that requested the token, or one it replaced, must be
    /// one of these.
    #[arg(long, env = "OAUTH_TXN_REQUESTERS", value_delimiter = ',')]
    pub txn_requesters: Vec<String>,
    /// The workloads (client ids) that may call this service with a
    /// Txn-Token: the client id of the access token beside it.
    #[arg(long, env = "OAUTH_TXN_CALLERS", value_delimiter = ',')]
    pub txn_callers: Vec<String>,
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
            revocation_max_staleness_secs: DEFAULT_REVOCATION_MAX_STALENESS,
            dpop_origin: None,
            txn_trust_domain: None,
            txn_requesters: Vec::new(),
            txn_callers: Vec::new(),
        }
    }

    /// What Txn-Tokens this service accepts, if any.
    pub fn txn_tokens(&self) -> Result<Option<TxnCheck>, ConfigError> {
        let Some(domain) = &self.txn_trust_domain else { return Ok(None) };
        let named = |list: &[String]| -> Vec<String> {
            list.iter().filter(|r| !r.is_empty()).cloned().collect()
        };
        let (requesters, callers) = (named(&self.txn_requesters), named(&self.txn_callers));
        if requesters.is_empty() || callers.is_empty() {
            return Err(ConfigError::NoTxnWorkloads);
        }
        let mut policy = TxnTokenPolicy::new(domain.clone(), self.issuer.clone());
        policy.leeway_secs = self.leeway_secs;
        Ok(Some(TxnCheck { policy, requesters, callers }))
    }

    /// The configured DPoP origin, checked: `scheme://authority` with an
    /// `http` or `https` scheme, a host, and no path, query or fragment.
    pub fn dpop_origin(&self) -> Result<Option<String>, ConfigError> {
        let Some(origin) = &self.dpop_origin else { return Ok(None) };
        dpop_origin(origin).map(Some).ok_or_else(|| ConfigError::DpopOrigin(origin.clone()))
    }

    pub fn audience_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.audience.as_deref().unwrap_or(default)
    }

    pub fn jwks(&self, tls: &ClientTls) -> JwksConfig {
        let uri = self
            .jwks_uri
            .clone()
            .unwrap_or_else(|| format!("{}/jwks.json", self.issuer.trim_end_matches('/')));
        JwksConfig {
            refresh_interval: Duration::from_secs(self.jwks_refresh_secs),
            min_refetch_interval: Duration::from_secs(self.jwks_min_refetch_secs),
            max_staleness: Duration::from_secs(self.jwks_max_staleness_secs),
            tls: tls.clone(),
            ..JwksConfig::new(uri)
        }
    }

    pub fn verifier(&self, default_audience: &str) -> VerifierConfig {
        let mut verifier = VerifierConfig::new(&self.issuer, self.audience_or(default_audience));
        verifier.leeway_secs = self.leeway_secs;
        verifier
    }

    /// The service's own credentials at the authorization server, if
    /// configured: its client id, and its secret unless it authenticates with
    /// its TLS client certificate (RFC 8705 `tls_client_auth`).
    pub fn credentials(&self) -> Option<(String, Option<Secret>)> {
        Some((self.client_id.clone()?, self.client_secret.clone()))
    }

    /// The denylist sync, if this service has credentials. The staleness bound
    /// is checked either way: a setting that cannot work is refused at start,
    /// not when credentials are added later.
    pub fn revocation(&self, tls: &ClientTls) -> Result<Option<RevocationConfig>, ConfigError> {
        if !(0..=MAX_LEEWAY).contains(&self.leeway_secs) {
            return Err(ConfigError::LeewayTooLong(self.leeway_secs));
        }
        let interval = self.revocation_sync_secs.max(1);
        if self.revocation_max_staleness_secs <= interval {
            return Err(ConfigError::StalenessNotAboveSync {
                max_staleness: self.revocation_max_staleness_secs,
                interval,
            });
        }
        let Some((client_id, client_secret)) = self.credentials() else { return Ok(None) };
        if client_secret.is_none()
            && !(tls.has_identity() && self.auth_grpc_url.starts_with("https://"))
        {
            return Err(ConfigError::NoClientAuthentication);
        }
        Ok(Some(RevocationConfig {
            auth_grpc_url: self.auth_grpc_url.clone(),
            client_id,
            client_secret,
            interval: Duration::from_secs(interval),
            max_staleness: Duration::from_secs(self.revocation_max_staleness_secs),
            tls: tls.clone(),
        }))
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
    /// Starts the JWKS cache and (with credentials) the denylist sync, both
    /// over `tls` for `https://` URLs, and builds the auth layer enforcing
    /// `policy` for tokens whose `aud` is the configured audience or
    /// `default_audience`.
    pub fn start(
        service: &'static str,
        config: &TokenValidationConfig,
        default_audience: &str,
        policy: ScopePolicy,
        clock: Arc<dyn Clock>,
        tls: &ClientTls,
    ) -> Result<Self, GuardError> {
        let revocation = config.revocation(tls)?;
        let dpop_origin = config.dpop_origin()?;
        let txn_tokens = config.txn_tokens()?;
        let (jwks, jwks_task) = JwksCache::spawn(config.jwks(tls), clock.clone());
        let mut tasks = vec![jwks_task];
        let denylist = match revocation {
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
        let layer = match &dpop_origin {
            Some(origin) => layer.with_dpop(origin),
            None => layer,
        };
        let layer = match txn_tokens {
            Some(txn) => layer.with_txn_tokens(txn),
            None => layer,
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dpop_origin_is_a_bare_origin_or_refused_at_start() {
        let origin = |value: &str| {
            let mut config = TokenValidationConfig::new("https://as.example");
            config.dpop_origin = Some(value.into());
            config.dpop_origin().map_err(|e| e.to_string())
        };
        assert_eq!(
            origin("https://Notes.Example:50051"),
            Ok(Some("https://notes.example:50051".into()))
        );
        assert_eq!(origin("https://notes.example:443/"), Ok(Some("https://notes.example".into())));
        assert_eq!(origin("http://127.0.0.1:50051"), Ok(Some("http://127.0.0.1:50051".into())));
        for refused in [
            "notes.example:50051",
            "https://notes.example/api",
            "https://notes.example?x",
            "https://user@notes.example",
            "grpc://notes.example",
            "https://",
        ] {
            let err = origin(refused).expect_err(refused);
            assert!(err.starts_with("OAUTH_DPOP_ORIGIN"), "{refused}: {err}");
        }
        assert_eq!(TokenValidationConfig::new("https://as.example").dpop_origin().unwrap(), None);
    }

    #[test]
    fn a_leeway_longer_than_the_denylist_keeps_revoked_tokens_is_refused() {
        let mut config = TokenValidationConfig::new("https://as.example");
        config.leeway_secs = MAX_LEEWAY;
        assert!(config.revocation(&ClientTls::public_roots()).is_ok());
        config.leeway_secs = MAX_LEEWAY + 1;
        let refused = config.revocation(&ClientTls::public_roots()).unwrap_err();
        assert!(
            refused.to_string().contains("OAUTH_LEEWAY (121 s) must be at most 120 s"),
            "{refused}"
        );
    }

    #[test]
    fn the_staleness_bound_must_exceed_the_sync_interval() {
        let mut config = TokenValidationConfig::new("https://as.example");
        config.client_id = Some("svc".into());
        config.client_secret = Some(Secret::new("secret"));
        let revocation = config.revocation(&ClientTls::public_roots()).unwrap().unwrap();
        assert_eq!(revocation.interval, Duration::from_secs(DEFAULT_REVOCATION_SYNC));
        assert_eq!(revocation.max_staleness, Duration::from_secs(DEFAULT_REVOCATION_MAX_STALENESS));

        config.revocation_sync_secs = 120;
        let refused = config.revocation(&ClientTls::public_roots()).unwrap_err();
        assert!(
            refused.to_string().contains("OAUTH_REVOCATION_MAX_STALENESS (120 s)"),
            "{refused}"
        );
        // Checked without credentials too: the setting is wrong either way.
        config.client_id = None;
        assert!(config.revocation(&ClientTls::public_roots()).is_err());
        config.revocation_sync_secs = 119;
        assert!(config.revocation(&ClientTls::public_roots()).unwrap().is_none());
    }
}

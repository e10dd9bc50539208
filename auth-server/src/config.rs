//! The authorization server's configuration: read once at start-up (flags or
//! environment), typed, and passed down. Nothing reads the environment later.

use crate::domain::throttle::{Rate, ThrottleSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use tollgate_service_kit::tls::TlsConfig;

use tollgate_service_kit::telemetry::LogFormat;
use tollgate_token::KeyAlgorithm;

/// The signature algorithm for access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SigningAlg {
    /// Ed25519 (RFC 8037): small, fast, deterministic. The default.
    #[value(name = "EdDSA")]
    EdDsa,
    /// ECDSA P-256 (RFC 7518 §3.4), for verifiers without Ed25519.
    #[value(name = "ES256")]
    Es256,
}

impl From<SigningAlg> for KeyAlgorithm {
    fn from(alg: SigningAlg) -> Self {
        match alg {
            SigningAlg::EdDsa => KeyAlgorithm::EdDSA,
            SigningAlg::Es256 => KeyAlgorithm::ES256,
        }
    }
}

pub const DEFAULT_AUDIENCE: &str = "tollgate-resource";
pub const DEFAULT_ACCESS_TOKEN_TTL: i64 = 300;
/// The trust domain's name unless `AUTH_TXN_TRUST_DOMAIN` says otherwise: one
/// deployment's workloads share it with its authorization server.
pub const DEFAULT_TXN_TRUST_DOMAIN: &str = "tollgate.internal";
/// A Txn-Token lives a minute: long enough for one call chain, short enough
/// that a copy taken from a hop is soon useless (the draft's "minutes or less").
pub const DEFAULT_TXN_TOKEN_TTL: i64 = 60;
pub const DEFAULT_REFRESH_TOKEN_TTL: i64 = 30 * 24 * 3600;
/// However often it is refreshed, a grant ends 90 days after the owner
/// approved it, and they sign in again (RFC 9700 §4.14.2).
pub const DEFAULT_GRANT_MAX_LIFETIME: i64 = 90 * 24 * 3600;
/// RFC 6749 §4.1.2 allows up to ten minutes; a minute is plenty for a redirect.
pub const DEFAULT_CODE_TTL: i64 = 60;
/// Long enough for two requests racing from one client, short enough that a
/// stolen token replayed later is caught.
pub const DEFAULT_REFRESH_REUSE_GRACE: i64 = 2;
/// RFC 8628 §3.2: ten minutes to find another device and approve.
pub const DEFAULT_DEVICE_CODE_TTL: i64 = 600;
/// Scheduled signing-key rotation: every 30 days.
pub const DEFAULT_KEY_ROTATION: i64 = 30 * 24 * 3600;
/// A new key is published an hour before it signs: far longer than resource
/// servers take to refetch the JWKS (5 minutes by default).
pub const DEFAULT_KEY_PROPAGATION: i64 = 3600;
/// How often the server re-reads its keys and checks whether rotation is due.
pub const DEFAULT_KEY_CHECK: u64 = 60;
/// Expired records are purged hourly...
pub const DEFAULT_PURGE_INTERVAL: u64 = 3600;
/// ...once they have been expired for a week: long enough that a late replay
/// of a spent code or refresh token is still recognised and revokes its grant.
pub const DEFAULT_PURGE_RETENTION: i64 = 7 * 24 * 3600;
/// Device authorizations one client may have pending at once.
pub const DEFAULT_MAX_PENDING_DEVICE_CODES: u64 = 1_000;
/// The largest HTTP request body: every form and JSON body the endpoints take
/// fits in a few KiB (a client assertion or subject token in a few more).
pub const DEFAULT_HTTP_BODY_LIMIT: usize = 64 * 1024;
/// How long a client may take to send a request's headers, and how long an
/// idle keep-alive connection stays open, seconds.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: u64 = 10;
/// The longest one HTTP request may take, body included, seconds.
pub const DEFAULT_HTTP_REQUEST_TIMEOUT: u64 = 30;
/// How long a TLS handshake may take, seconds.
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: u64 = 10;
/// HTTP connections open at once; further ones wait in the listen backlog.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: usize = 4_096;
/// HTTP requests of one address handled at once; its others wait.
pub const DEFAULT_HTTP_REQUESTS_PER_ADDRESS: usize = 4;
/// How long a password check waits for a hashing slot before it is refused.
pub const DEFAULT_HASH_WAIT_MS: u64 = 1000;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the HTTP listener (authorization, token, metadata, JWKS). Port 0 picks a free port.
    #[arg(long, env = "AUTH_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Address of the gRPC listener (token service, health, reflection).
    #[arg(long, env = "AUTH_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// The origin (`https://host:port`) clients call the gRPC listener at: a
    /// DPoP proof sent to the token service names it and the method's path
    /// (docs/dpop-grpc.md). Defaults to `http(s)://<bound gRPC address>`.
    #[arg(long, env = "AUTH_GRPC_DPOP_ORIGIN")]
    pub grpc_dpop_origin: Option<String>,
    /// Require a server nonce in every DPoP proof at the token endpoint
    /// (RFC 9449 §8): a proof without the current one is answered
    /// `use_dpop_nonce` with a fresh one in `DPoP-Nonce`. Nonces change every
    /// minute; replicas sharing AUTH_COOKIE_KEY_FILE accept each other's.
    #[arg(long, env = "AUTH_DPOP_NONCE", default_value_t = false, action = clap::ArgAction::Set)]
    pub dpop_nonce: bool,
    /// The issuer identifier (RFC 8414): the public base URL of the HTTP listener.
    /// Defaults to `http://<bound HTTP address>`.
    #[arg(long, env = "AUTH_ISSUER")]
    pub issuer: Option<String>,
    /// Where the embedded SQLite database lives (created if missing).
    #[arg(long, env = "AUTH_DATA_DIR", default_value = "data/auth-server")]
    pub data_dir: PathBuf,
    /// A database URL (`sqlite://…` or `postgres://…`); overrides --data-dir.
    #[arg(long, env = "AUTH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// A bootstrap file registering clients and users at start (see docs/bootstrap.md).
    #[arg(long, env = "AUTH_BOOTSTRAP")]
    pub bootstrap: Option<PathBuf>,
    /// Signature algorithm of access tokens.
    #[arg(long, env = "AUTH_SIGNING_ALG", value_enum, default_value = "EdDSA")]
    pub signing_alg: SigningAlg,
    /// The `aud` of access tokens for clients that do not name their own.
    #[arg(long, env = "AUTH_DEFAULT_AUDIENCE", default_value = DEFAULT_AUDIENCE)]
    pub default_audience: String,
    /// Access-token lifetime, seconds.
    #[arg(long, env = "AUTH_ACCESS_TOKEN_TTL", default_value_t = DEFAULT_ACCESS_TOKEN_TTL)]
    pub access_token_ttl_secs: i64,
    /// The trust domain this server is the Txn-Token Service of
    /// (draft-ietf-oauth-transaction-tokens): the `aud` of every Txn-Token,
    /// and the `audience` a workload names to ask for one.
    #[arg(long, env = "AUTH_TXN_TRUST_DOMAIN", default_value = DEFAULT_TXN_TRUST_DOMAIN)]
    pub txn_trust_domain: String,
    /// Txn-Token lifetime, seconds (1 to 300): one call chain's worth. Never
    /// beyond the token it was obtained with.
    #[arg(long, env = "AUTH_TXN_TOKEN_TTL", default_value_t = DEFAULT_TXN_TOKEN_TTL)]
    pub txn_token_ttl_secs: i64,
    /// Refresh-token lifetime, seconds.
    #[arg(long, env = "AUTH_REFRESH_TOKEN_TTL", default_value_t = DEFAULT_REFRESH_TOKEN_TTL)]
    pub refresh_token_ttl_secs: i64,
    /// The absolute lifetime of a grant, seconds: no refresh token outlives
    /// its grant's approval by more, however often it is rotated.
    #[arg(
        long,
        env = "AUTH_GRANT_MAX_LIFETIME",
        default_value_t = DEFAULT_GRANT_MAX_LIFETIME,
        value_parser = clap::value_parser!(i64).range(1..)
    )]
    pub grant_max_lifetime_secs: i64,
    /// Authorization-code lifetime, seconds.
    #[arg(long, env = "AUTH_CODE_TTL", default_value_t = DEFAULT_CODE_TTL)]
    pub code_ttl_secs: i64,
    /// A spent refresh token presented again within this many seconds is only
    /// refused (a concurrent refresh); later, its whole grant is revoked.
    #[arg(long, env = "AUTH_REFRESH_REUSE_GRACE", default_value_t = DEFAULT_REFRESH_REUSE_GRACE)]
    pub refresh_reuse_grace_secs: i64,
    /// Device-code lifetime (RFC 8628), seconds.
    #[arg(long, env = "AUTH_DEVICE_CODE_TTL", default_value_t = DEFAULT_DEVICE_CODE_TTL)]
    pub device_code_ttl_secs: i64,
    /// Rotate the signing key when it has signed for this long, seconds (0: never
    /// on a schedule; `admin rotate-keys` still works).
    #[arg(long, env = "AUTH_KEY_ROTATION", default_value_t = DEFAULT_KEY_ROTATION)]
    pub key_rotation_secs: i64,
    /// How long a new key is published before it signs, seconds. Must exceed the
    /// resource servers' JWKS refresh interval.
    #[arg(long, env = "AUTH_KEY_PROPAGATION", default_value_t = DEFAULT_KEY_PROPAGATION)]
    pub key_propagation_secs: i64,
    /// How often keys are re-read from the database and rotation checked, seconds.
    #[arg(long, env = "AUTH_KEY_CHECK", default_value_t = DEFAULT_KEY_CHECK)]
    pub key_check_secs: u64,
    /// How often expired codes, tokens and grants are deleted, seconds (0:
    /// never; `admin purge` still works). Every replica may run it.
    #[arg(long, env = "AUTH_PURGE_INTERVAL", default_value_t = DEFAULT_PURGE_INTERVAL)]
    pub purge_interval_secs: u64,
    /// How long an expired record is kept before the purge deletes it, seconds.
    /// Until then a replayed code or reused refresh token still revokes its
    /// grant; after, it is refused as unknown.
    #[arg(long, env = "AUTH_PURGE_RETENTION", default_value_t = DEFAULT_PURGE_RETENTION)]
    pub purge_retention_secs: i64,
    /// Password hashes (argon2id, 7 MiB each) running at once; 0: one per core.
    #[arg(long, env = "AUTH_HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,
    /// Password checks waiting for a hashing slot beyond those running; past
    /// it a sign-in is answered 503 with Retry-After. Default: the concurrency.
    #[arg(long, env = "AUTH_HASH_QUEUE")]
    pub hash_queue: Option<usize>,
    /// How long a waiting password check waits before it is refused, ms.
    #[arg(long, env = "AUTH_HASH_WAIT_MS", default_value_t = DEFAULT_HASH_WAIT_MS)]
    pub hash_wait_ms: u64,
    /// The password-hashing threads' scheduling priority: `idle` (Linux
    /// SCHED_IDLE: requests always go first; under a load that keeps every
    /// core busy, sign-ins wait and are refused) or a nice value 0-19 (a hash
    /// keeps a share of a busy core; requests may wait for its time slice).
    #[arg(long, env = "AUTH_HASH_PRIORITY", default_value = "idle")]
    pub hash_priority: crate::domain::hashing::HashPriority,
    /// A file with at least 64 random bytes, base64-encoded, that encrypts session
    /// cookies. Without it a key is generated at start (sign-ins end on restart).
    #[arg(long, env = "AUTH_COOKIE_KEY_FILE")]
    pub cookie_key_file: Option<PathBuf>,
    /// TLS on both listeners (`TLS_*`). Without a certificate the server
    /// speaks plaintext HTTP and gRPC: for local development only. With a
    /// client CA, the gRPC listener requires a client certificate from it and
    /// the HTTP listener asks for one (RFC 8705), requiring none.
    #[command(flatten)]
    pub tls: TlsConfig,
    /// On SIGTERM, seconds to keep serving with health NOT_SERVING before the
    /// listener closes, so load balancers stop routing here first. Calls in
    /// flight then finish either way.
    #[arg(long, env = "SHUTDOWN_DRAIN_SECS", default_value_t = 0)]
    pub shutdown_drain_secs: u64,
    #[command(flatten)]
    pub probe: tollgate_service_kit::probe::ProbeConfig,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub grpc_limits: tollgate_service_kit::limits::GrpcLimits,
    #[command(flatten)]
    pub telemetry: tollgate_service_kit::telemetry::TelemetryConfig,
    /// Log format.
    #[arg(long, env = "AUTH_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults, with the data under `data_dir` and both listeners on free
    /// loopback ports. For tests and embedding: built here, not parsed, so no
    /// `AUTH_*` variable in the environment can change it.
    pub fn local(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: None,
            grpc_dpop_origin: None,
            dpop_nonce: false,
            data_dir: data_dir.into(),
            database_url: None,
            bootstrap: None,
            signing_alg: SigningAlg::EdDsa,
            default_audience: DEFAULT_AUDIENCE.into(),
            access_token_ttl_secs: DEFAULT_ACCESS_TOKEN_TTL,
            txn_trust_domain: DEFAULT_TXN_TRUST_DOMAIN.into(),
            txn_token_ttl_secs: DEFAULT_TXN_TOKEN_TTL,
            refresh_token_ttl_secs: DEFAULT_REFRESH_TOKEN_TTL,
            grant_max_lifetime_secs: DEFAULT_GRANT_MAX_LIFETIME,
            code_ttl_secs: DEFAULT_CODE_TTL,
            refresh_reuse_grace_secs: DEFAULT_REFRESH_REUSE_GRACE,
            device_code_ttl_secs: DEFAULT_DEVICE_CODE_TTL,
            key_rotation_secs: DEFAULT_KEY_ROTATION,
            key_propagation_secs: DEFAULT_KEY_PROPAGATION,
            key_check_secs: DEFAULT_KEY_CHECK,
            purge_interval_secs: DEFAULT_PURGE_INTERVAL,
            purge_retention_secs: DEFAULT_PURGE_RETENTION,
            hash_concurrency: 0,
            hash_queue: None,
            hash_wait_ms: DEFAULT_HASH_WAIT_MS,
            hash_priority: crate::domain::hashing::HashPriority::Idle,
            cookie_key_file: None,
            tls: TlsConfig::default(),
            log_format: LogFormat::Text,
            shutdown_drain_secs: 0,
            probe: Default::default(),
            limits: LimitsConfig::default(),
            grpc_limits: Default::default(),
            telemetry: Default::default(),
        }
    }

    /// The database to open; the embedded default's directory is created here.
    /// When keys change. A replaced key stays published for an access-token
    /// lifetime plus five minutes (more than any verifier's leeway).
    pub fn rotation_policy(&self) -> crate::domain::keys::RotationPolicy {
        crate::domain::keys::RotationPolicy {
            propagation_secs: self.key_propagation_secs,
            retire_after_secs: self.access_token_ttl_secs + 300,
            rotate_every_secs: self.key_rotation_secs,
        }
    }

    pub fn database_url(&self) -> std::io::Result<String> {
        tollgate_service_kit::db::database_url(
            self.database_url.as_deref(),
            &self.data_dir,
            "auth.db",
        )
    }
}

impl Config {
    /// The password-hashing gate's limits, with the machine's cores filled in.
    pub fn hash_limits(&self) -> crate::domain::hashing::HashLimits {
        let machine = crate::domain::hashing::HashLimits::for_this_machine();
        let concurrency =
            if self.hash_concurrency == 0 { machine.concurrency } else { self.hash_concurrency };
        crate::domain::hashing::HashLimits {
            concurrency,
            queue: self.hash_queue.unwrap_or(concurrency),
            wait: std::time::Duration::from_millis(self.hash_wait_ms),
            priority: self.hash_priority,
        }
    }
}

/// The throttles and the HTTP listener's limits (docs/security.md, "Limits").
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// Password sign-ins from one address: burst/period, e.g. 20/1m.
    #[arg(long, env = "AUTH_RATE_SIGN_IN_IP", default_value_t = ThrottleSettings::default().sign_in_ip)]
    pub rate_sign_in_ip: Rate,
    /// Sign-ins naming one account, from anywhere.
    #[arg(long, env = "AUTH_RATE_SIGN_IN_ACCOUNT", default_value_t = ThrottleSettings::default().sign_in_account)]
    pub rate_sign_in_account: Rate,
    /// Sign-ins naming one account from one address; must refill more slowly
    /// than AUTH_RATE_SIGN_IN_ACCOUNT.
    #[arg(long, env = "AUTH_RATE_SIGN_IN_ACCOUNT_IP", default_value_t = ThrottleSettings::default().sign_in_account_ip)]
    pub rate_sign_in_account_ip: Rate,
    /// An authenticated client's calls (token, introspection, revocation,
    /// device authorization; HTTP and gRPC).
    #[arg(long, env = "AUTH_RATE_CLIENT", default_value_t = ThrottleSettings::default().client)]
    pub rate_client: Rate,
    /// A client's revocations (each can grow the denylist).
    #[arg(long, env = "AUTH_RATE_REVOKE", default_value_t = ThrottleSettings::default().revoke)]
    pub rate_revoke: Rate,
    /// Device authorizations and user-code entries from one address.
    #[arg(long, env = "AUTH_RATE_DEVICE_IP", default_value_t = ThrottleSettings::default().device_ip)]
    pub rate_device_ip: Rate,
    /// Page requests (authorize, sign-in, consent, device, account) from one address.
    #[arg(long, env = "AUTH_RATE_PAGES_IP", default_value_t = ThrottleSettings::default().pages_ip)]
    pub rate_pages_ip: Rate,
    /// Keys (addresses, clients, names) each throttle tracks.
    #[arg(long, env = "AUTH_THROTTLE_MAX_KEYS", default_value_t = ThrottleSettings::default().max_keys)]
    pub throttle_max_keys: usize,
    /// Device authorizations one client may have pending at once.
    #[arg(long, env = "AUTH_MAX_PENDING_DEVICE_CODES", default_value_t = DEFAULT_MAX_PENDING_DEVICE_CODES)]
    pub max_pending_device_codes: u64,
    /// The largest HTTP request body, bytes.
    #[arg(long, env = "AUTH_HTTP_BODY_LIMIT", default_value_t = DEFAULT_HTTP_BODY_LIMIT)]
    pub http_body_limit: usize,
    /// Seconds a client may take to send request headers; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "AUTH_HTTP_HEADER_TIMEOUT", default_value_t = DEFAULT_HTTP_HEADER_TIMEOUT)]
    pub http_header_timeout_secs: u64,
    /// Seconds one HTTP request may take, body included (then 408).
    #[arg(long, env = "AUTH_HTTP_REQUEST_TIMEOUT", default_value_t = DEFAULT_HTTP_REQUEST_TIMEOUT)]
    pub http_request_timeout_secs: u64,
    /// Seconds a TLS handshake may take.
    #[arg(long, env = "AUTH_TLS_HANDSHAKE_TIMEOUT", default_value_t = DEFAULT_TLS_HANDSHAKE_TIMEOUT)]
    pub tls_handshake_timeout_secs: u64,
    /// HTTP connections open at once.
    #[arg(long, env = "AUTH_HTTP_MAX_CONNECTIONS", default_value_t = DEFAULT_HTTP_MAX_CONNECTIONS)]
    pub http_max_connections: usize,
    /// HTTP requests of one address (IPv6: one /64) handled at once; its
    /// further requests wait.
    #[arg(long, env = "AUTH_HTTP_REQUESTS_PER_ADDRESS", default_value_t = DEFAULT_HTTP_REQUESTS_PER_ADDRESS)]
    pub http_requests_per_address: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let throttles = ThrottleSettings::default();
        Self {
            rate_sign_in_ip: throttles.sign_in_ip,
            rate_sign_in_account: throttles.sign_in_account,
            rate_sign_in_account_ip: throttles.sign_in_account_ip,
            rate_client: throttles.client,
            rate_revoke: throttles.revoke,
            rate_device_ip: throttles.device_ip,
            rate_pages_ip: throttles.pages_ip,
            throttle_max_keys: throttles.max_keys,
            max_pending_device_codes: DEFAULT_MAX_PENDING_DEVICE_CODES,
            http_body_limit: DEFAULT_HTTP_BODY_LIMIT,
            http_header_timeout_secs: DEFAULT_HTTP_HEADER_TIMEOUT,
            http_request_timeout_secs: DEFAULT_HTTP_REQUEST_TIMEOUT,
            tls_handshake_timeout_secs: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
            http_max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
            http_requests_per_address: DEFAULT_HTTP_REQUESTS_PER_ADDRESS,
        }
    }
}

impl LimitsConfig {
    /// The throttles' settings, checked.
    pub fn throttles(&self) -> Result<ThrottleSettings, String> {
        let settings = ThrottleSettings {
            sign_in_ip: self.rate_sign_in_ip,
            sign_in_account: self.rate_sign_in_account,
            sign_in_account_ip: self.rate_sign_in_account_ip,
            client: self.rate_client,
            revoke: self.rate_revoke,
            device_ip: self.rate_device_ip,
            pages_ip: self.rate_pages_ip,
            max_keys: self.throttle_max_keys,
        };
        settings.check()?;
        Ok(settings)
    }

    /// The HTTP listener's limits.
    pub fn http(&self) -> crate::http::serve::HttpLimits {
        use std::time::Duration;
        crate::http::serve::HttpLimits {
            body_bytes: self.http_body_limit,
            header_timeout: Duration::from_secs(self.http_header_timeout_secs),
            request_timeout: Duration::from_secs(self.http_request_timeout_secs),
            tls_handshake_timeout: Duration::from_secs(self.tls_handshake_timeout_secs),
            max_connections: self.http_max_connections.max(1),
            requests_per_address: self.http_requests_per_address.max(1),
        }
    }
}

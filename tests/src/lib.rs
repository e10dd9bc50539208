//! The end-to-end harness: the real services, started in-process on free ports
//! with a fresh database each, driven the way the sequence diagrams in
//! `docs/flows.md` read.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let stack = tollgate_e2e::TestStack::start().await?;
//! let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await?;
//! let notes = stack.resource().await?.list_notes(tokens.access_token.expose(), "me").await?;
//! # Ok(()) }
//! ```
//!
//! Time is a [`ManualClock`] shared by every service: tests move it instead of
//! sleeping. Readiness is the services' gRPC health turning `SERVING`, watched,
//! not polled on a timer. What happens in the background (the denylist sync, the
//! key refresh) is waited for on cue, and every wait gives up after
//! [`PATIENCE`] with a message rather than hanging.
//!
//! With the `test-support` feature, which only this crate's test targets turn
//! on, the harness also sees inside the protected services: their denylists,
//! key caches and access logs.
#![forbid(unsafe_code)]

mod demo_data;

/// The origin (`OAUTH_DPOP_ORIGIN`) the test stack's resource server takes
/// DPoP proofs for.
pub const RESOURCE_DPOP_ORIGIN: &str = "https://resource.tollgate.test";

pub mod forge;
pub mod probe;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tollgate_auth_server::domain::OAuthCore;
use tollgate_auth_server::storage::SqlStore;
use tollgate_client_app::ClientError;
use tollgate_client_app::discovery::{ServerMetadata, discover};
use tollgate_client_app::loopback::LoopbackRedirect;
use tollgate_client_app::oauth::{ClientIdentity, OAuthClient};
use tollgate_client_app::owner::{Page, ScriptedOwner};
use tollgate_client_app::resource::ResourceClient;
use tollgate_client_app::tokens::TokenSet;
use tollgate_service_kit::protect::TokenValidationConfig;
use tollgate_service_kit::tls::{ClientTls, GrpcTarget, TlsConfig};
use tollgate_token::{Clock, ManualClock, Secret, SystemClock};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub use demo_data::{
    AUTH_SERVER_DNS, DemoSecrets, LEDGER_AUDIENCE, LEDGER_CLIENT, LEDGER_DNS, NOTES_STORE_CLIENT,
    NOTES_STORE_DNS, PASSWORDS, RESOURCE_SERVER_CLIENT, RESOURCE_SERVER_DNS, TRUST_DOMAIN,
    bootstrap_toml,
};

/// How long any wait of the harness lasts before it fails with a message: far
/// beyond what a healthy run needs on a loaded machine, so running out means
/// something is broken, not slow.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Every service's configuration, before they start. The resource server's and
/// the notes store's issuer and authorization-server URL are filled in once the
/// authorization server is bound (unless a tweak set them).
pub struct StackConfig {
    pub auth: tollgate_auth_server::Config,
    pub resource: tollgate_resource_server::Config,
    pub notes: tollgate_notes_store::Config,
    pub ledger: tollgate_ledger::Config,
}

/// The time every service of a stack reads.
#[derive(Clone)]
enum StackClock {
    /// Moved by the test ([`TestStack::advance`]).
    Manual(Arc<ManualClock>),
    /// Real time (the quickstart).
    System,
}

impl StackClock {
    fn shared(&self) -> Arc<dyn Clock> {
        match self {
            Self::Manual(clock) => clock.clone(),
            Self::System => Arc::new(SystemClock),
        }
    }
}

/// How to start a [`TestStack`]: [`TestStack::builder`], then
/// [`StackBuilder::start`].
pub struct StackBuilder {
    clock: StackClock,
    tweak: Box<dyn FnOnce(&mut StackConfig) + Send>,
    tls: Option<Mutual>,
}

/// Whether the internal listeners of a TLS stack require client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutual {
    /// The authorization server's gRPC listener and the notes store require a
    /// certificate from the stack's CA; the authorization server's HTTP
    /// listener asks for one; the resource server (the public API) does not.
    Internal,
    /// TLS, server-authenticated only.
    No,
}

/// A TLS stack's development CA and the certificates the harness uses.
pub struct StackTls {
    /// The CA every service trusts (`ca.pem` in the stack's directory).
    pub ca: tollgate_service_kit::dev_ca::DevCa,
    pub ca_file: std::path::PathBuf,
    /// Trusts the CA, presents no certificate: what an end user's client has.
    pub anonymous: ClientTls,
    /// Trusts the CA and presents the harness's own certificate (health
    /// probes of the internal listeners).
    pub harness: ClientTls,
    pub mutual: Mutual,
    dir: std::path::PathBuf,
}

impl StackTls {
    fn new(dir: &std::path::Path, mutual: Mutual) -> anyhow::Result<Self> {
        let dir = dir.join("tls");
        std::fs::create_dir_all(&dir)?;
        let ca = tollgate_service_kit::dev_ca::DevCa::new(
            "Tollgate test CA",
            tollgate_token::Clock::now(&tollgate_token::SystemClock),
        )?;
        let ca_file = ca.write_ca(&dir)?;
        let harness = ca.write_service(&dir, "e2e-harness", &["e2e-harness"], &[])?;
        let anonymous = ClientTls::from_config(&TlsConfig {
            ca: Some(ca_file.clone()),
            ..TlsConfig::default()
        })?;
        let harness = ClientTls::from_config(&TlsConfig::for_service(
            harness.cert,
            harness.key,
            ca_file.clone(),
            false,
        ))?;
        Ok(Self { ca, ca_file, anonymous, harness, mutual, dir })
    }

    /// Where the CA and the certificates are written.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// What `service` presents and trusts as a client (its certificate from
    /// [`StackTls::service`]).
    pub fn client_of(&self, service: &str) -> anyhow::Result<ClientTls> {
        let (cert, key) =
            (self.dir.join(format!("{service}.pem")), self.dir.join(format!("{service}.key")));
        ClientTls::from_config(&TlsConfig::for_service(cert, key, self.ca_file.clone(), false))
    }

    /// A certificate for `service` (its name, localhost and 127.0.0.1) and the TLS
    /// settings that serve it, with client certificates required when
    /// `mutual`.
    pub fn service(&self, service: &str, mutual: bool) -> anyhow::Result<TlsConfig> {
        let files =
            self.ca.write_service(&self.dir, service, &[service, "localhost"], &[LOOPBACK])?;
        Ok(TlsConfig::for_service(files.cert, files.key, self.ca_file.clone(), mutual))
    }
}

const LOOPBACK: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

impl StackBuilder {
    /// Every service reads the system clock instead of a manual one (the
    /// quickstart, which runs in real time). [`TestStack::advance`] then panics.
    pub fn system_clock(mut self) -> Self {
        self.clock = StackClock::System;
        self
    }

    /// Every listener on TLS with certificates from a fresh development CA,
    /// and every connection between the services over TLS (mutual where
    /// `mutual` says).
    pub fn tls(mut self, mutual: Mutual) -> Self {
        self.tls = Some(mutual);
        self
    }

    /// Adjusts the services' configuration before they start.
    pub fn tweak(mut self, tweak: impl FnOnce(&mut StackConfig) + Send + 'static) -> Self {
        self.tweak = Box::new(tweak);
        self
    }

    /// Starts the authorization server with the demo clients and users, then
    /// the notes store and the resource server identified at it, and waits
    /// until all three are `SERVING`.
    pub async fn start(self) -> anyhow::Result<TestStack> {
        let dir = tempfile::tempdir()?;
        let secrets = DemoSecrets::generate();
        let bootstrap = dir.path().join("bootstrap.toml");
        let mutual_tls = self.tls == Some(Mutual::Internal);
        std::fs::write(&bootstrap, demo_data::bootstrap_toml_for(&secrets, mutual_tls))?;

        let mut config = StackConfig {
            auth: tollgate_auth_server::Config::local(dir.path().join("auth")),
            resource: tollgate_resource_server::Config::local(dir.path().join("resource"), ""),
            notes: tollgate_notes_store::Config::local(dir.path().join("notes"), ""),
            ledger: tollgate_ledger::Config::local(dir.path().join("ledger"), ""),
        };
        // Transaction Tokens: the notes store accepts them from the resource
        // server (the edge of the trust domain); the ledger from the resource
        // server and the notes store (which may replace one), and only them.
        config.notes.tokens.txn_trust_domain = Some(demo_data::TRUST_DOMAIN.into());
        config.notes.tokens.txn_requesters = vec![demo_data::RESOURCE_SERVER_CLIENT.into()];
        config.notes.tokens.txn_callers = vec![demo_data::RESOURCE_SERVER_CLIENT.into()];
        config.ledger.tokens.txn_callers = vec![demo_data::NOTES_STORE_CLIENT.into()];
        config.ledger.tokens.txn_trust_domain = Some(demo_data::TRUST_DOMAIN.into());
        config.ledger.tokens.txn_requesters =
            vec![demo_data::RESOURCE_SERVER_CLIENT.into(), demo_data::NOTES_STORE_CLIENT.into()];
        config.auth.bootstrap = Some(bootstrap);
        let tls = match self.tls {
            None => None,
            Some(mutual) => {
                let tls = StackTls::new(dir.path(), mutual)?;
                let internal = mutual == Mutual::Internal;
                config.auth.tls = tls.service(demo_data::AUTH_SERVER_DNS, internal)?;
                config.notes.service.tls = tls.service(demo_data::NOTES_STORE_DNS, internal)?;
                config.ledger.service.tls = tls.service(demo_data::LEDGER_DNS, internal)?;
                config.resource.service.tls = tls.service(demo_data::RESOURCE_SERVER_DNS, false)?;
                Some(tls)
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        // The origin DPoP clients address the resource server at: a name, as
        // behind a proxy, not the listener's address (docs/dpop-grpc.md).
        config.resource.tokens.dpop_origin = Some(RESOURCE_DPOP_ORIGIN.into());
        for tokens in
            [&mut config.resource.tokens, &mut config.notes.tokens, &mut config.ledger.tokens]
        {
            // A rotated key reaches the protected services in a second, not
            // minutes. (Their denylists keep the production interval: a test
            // that needs a revocation in force syncs them on cue.)
            tokens.jwks_refresh_secs = 1;
            tokens.jwks_min_refetch_secs = 1;
        }
        (self.tweak)(&mut config);
        let resource_dpop_origin = config.resource.tokens.dpop_origin.clone().unwrap_or_default();
        let StackConfig { auth, mut resource, mut notes, mut ledger } = config;
        let clock = self.clock.shared();
        let mut running = Running::default();

        let auth = tollgate_auth_server::Application::build(auth, clock.clone())
            .await
            .context("starting the authorization server")?;
        let issuer = auth.issuer().to_owned();
        let auth_core = auth.core();
        let auth_grpc = auth.grpc_addr();
        let mut probes = Vec::new();
        probes.extend(auth.probe_addr().map(|addr| ("auth-server", addr)));
        running
            .spawn_service("authorization server", auth_grpc, |stop| auth.run_until_stopped(stop));

        // The ledger, two hops in, identified for the denylist.
        identify(
            &mut ledger.tokens,
            &issuer,
            &format!("{scheme}://{auth_grpc}"),
            demo_data::LEDGER_CLIENT,
            (!mutual_tls).then_some(&secrets.ledger),
        );
        let ledger = tollgate_ledger::Application::build(ledger, clock.clone())
            .await
            .context("starting the ledger")?;
        let ledger_grpc = ledger.grpc_addr();
        probes.extend(ledger.probe_addr().map(|addr| ("ledger", addr)));
        #[cfg(feature = "test-support")]
        let ledger_guard = Inside::of(ledger.guard());
        running.spawn_service("ledger", ledger_grpc, |stop| ledger.run_until_stopped(stop));

        // The notes store, identified at the authorization server for the
        // denylist and its own token for the ledger.
        notes.settings.ledger_url = Some(format!("{scheme}://{ledger_grpc}"));
        identify(
            &mut notes.tokens,
            &issuer,
            &format!("{scheme}://{auth_grpc}"),
            demo_data::NOTES_STORE_CLIENT,
            // Under mutual TLS a service proves itself with its certificate.
            (!mutual_tls).then_some(&secrets.notes_store),
        );
        let notes = tollgate_notes_store::Application::build(notes, clock.clone())
            .await
            .context("starting the notes store")?;
        let notes_grpc = notes.grpc_addr();
        probes.extend(notes.probe_addr().map(|addr| ("notes-store", addr)));
        #[cfg(feature = "test-support")]
        let notes_guard = Inside::of(notes.guard());
        running.spawn_service("notes store", notes_grpc, |stop| notes.run_until_stopped(stop));

        // The resource server: exchanges user tokens for the notes store.
        identify(
            &mut resource.tokens,
            &issuer,
            &format!("{scheme}://{auth_grpc}"),
            demo_data::RESOURCE_SERVER_CLIENT,
            (!mutual_tls).then_some(&secrets.resource_server),
        );
        resource.settings.notes_store_url = format!("{scheme}://{notes_grpc}");
        let resource = tollgate_resource_server::Application::build(resource, clock.clone())
            .await
            .context("starting the resource server")?;
        let resource_grpc = resource.grpc_addr();
        probes.extend(resource.probe_addr().map(|addr| ("resource-server", addr)));
        #[cfg(feature = "test-support")]
        let resource_guard = Inside::of(resource.guard());
        running.spawn_service("resource server", resource_grpc, |stop| {
            resource.run_until_stopped(stop)
        });

        let probe = tls.as_ref().map_or_else(ClientTls::public_roots, |tls| tls.harness.clone());
        running.wait_until_serving(scheme, &probe).await?;
        Ok(TestStack {
            clock: self.clock,
            tls,
            issuer,
            resource_dpop_origin,
            auth_grpc,
            resource_grpc,
            notes_grpc,
            ledger_grpc,
            probes,
            secrets,
            auth_core,
            #[cfg(feature = "test-support")]
            resource_guard,
            #[cfg(feature = "test-support")]
            notes_guard,
            #[cfg(feature = "test-support")]
            ledger_guard,
            running,
            _dir: dir,
        })
    }
}

/// Points a protected service at the authorization server and gives it its
/// own client credentials there (denylist, token exchange), unless a tweak
/// already did.
fn identify(
    tokens: &mut TokenValidationConfig,
    issuer: &str,
    auth_grpc_url: &str,
    client_id: &str,
    secret: Option<&Secret>,
) {
    if tokens.issuer.is_empty() {
        tokens.issuer = issuer.to_owned();
    }
    tokens.auth_grpc_url = auth_grpc_url.to_owned();
    if tokens.client_id.is_none() {
        tokens.client_id = Some(client_id.into());
        tokens.client_secret = secret.cloned();
    }
}

/// What a service's `run_until_stopped` waits on.
type StopSignal = BoxFuture<'static, ()>;

/// The started services: each one's name and gRPC address, its stop switch and
/// its task. Dropping it stops them (the switches close).
#[derive(Default)]
struct Running {
    services: Vec<(&'static str, SocketAddr)>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Runs a built service (`run` is its `run_until_stopped`) until the stack
    /// stops.
    fn spawn_service<F>(
        &mut self,
        name: &'static str,
        grpc: SocketAddr,
        run: impl FnOnce(StopSignal) -> F,
    ) where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        self.stops.push(stop);
        self.tasks.push(tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        }))));
        self.services.push((name, grpc));
    }

    async fn wait_until_serving(&self, scheme: &str, tls: &ClientTls) -> anyhow::Result<()> {
        for (name, grpc) in &self.services {
            wait_until_serving_at(&format!("{scheme}://{grpc}"), tls)
                .await
                .with_context(|| format!("{name} health"))?;
        }
        Ok(())
    }

    /// Tells every service to stop (health NOT_SERVING, then drain) and waits
    /// for them.
    async fn stop(&mut self) -> anyhow::Result<()> {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for (task, (name, _)) in self.tasks.drain(..).zip(&self.services) {
            within(&format!("the {name} to stop"), task).await???;
        }
        Ok(())
    }
}

/// The running services (authorization server, resource server, notes store)
/// with the demo clients and users registered.
pub struct TestStack {
    clock: StackClock,
    /// The CA and the harness's certificates of a stack started with
    /// [`StackBuilder::tls`].
    pub tls: Option<StackTls>,
    pub issuer: String,
    /// The origin the resource server takes DPoP proofs for
    /// ([`RESOURCE_DPOP_ORIGIN`] unless a tweak chose another).
    pub resource_dpop_origin: String,
    pub auth_grpc: SocketAddr,
    pub resource_grpc: SocketAddr,
    notes_grpc: SocketAddr,
    pub ledger_grpc: SocketAddr,
    /// Each service's probe listener (`PROBE_ADDR`), where it has one.
    pub probes: Vec<(&'static str, SocketAddr)>,
    pub secrets: DemoSecrets,
    /// The authorization server's protocol core (keys, storage) for tests that
    /// act as its operator.
    pub auth_core: Arc<OAuthCore<SqlStore>>,
    #[cfg(feature = "test-support")]
    resource_guard: Inside,
    #[cfg(feature = "test-support")]
    notes_guard: Inside,
    #[cfg(feature = "test-support")]
    ledger_guard: Inside,
    running: Running,
    _dir: TempDir,
}

impl TestStack {
    /// Every service on a manual clock, with the default configuration.
    pub async fn start() -> anyhow::Result<Self> {
        Self::builder().start().await
    }

    /// A manual clock starting at the current time; configuration untouched.
    pub fn builder() -> StackBuilder {
        StackBuilder {
            clock: StackClock::Manual(Arc::new(ManualClock::starting_now())),
            tweak: Box::new(|_| {}),
            tls: None,
        }
    }

    /// The time every service reads.
    pub fn now(&self) -> i64 {
        self.clock.shared().now()
    }

    /// The clock every service reads, for a service a test starts beside them
    /// (docs/protect-a-service.md).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.shared()
    }

    /// Moves the shared clock forward (tests of expiry). Panics on a real clock:
    /// that is a mistake in the test, not a condition to handle.
    pub fn advance(&self, secs: i64) {
        match &self.clock {
            StackClock::Manual(clock) => clock.advance(secs),
            StackClock::System => panic!("this stack runs on the system clock"),
        }
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The URI a DPoP proof for `method` (`/package.Service/Method`) of the
    /// resource server names (`htu`).
    pub fn resource_htu(&self, method: &str) -> String {
        format!("{}{method}", self.resource_dpop_origin)
    }

    /// The token endpoint's URI, as a DPoP proof for it names it (`htu`).
    pub fn token_htu(&self) -> String {
        format!("{}/token", self.issuer)
    }

    pub fn resource_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.resource_grpc)
    }

    /// The notes store's gRPC address.
    pub fn notes_grpc(&self) -> SocketAddr {
        self.notes_grpc
    }

    pub fn notes_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.notes_grpc)
    }

    pub fn ledger_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.ledger_grpc)
    }

    pub fn auth_grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.auth_grpc)
    }

    /// What an end user's client trusts: the stack's CA (a TLS stack) or the
    /// public roots; no client certificate.
    pub fn client_tls(&self) -> ClientTls {
        self.tls.as_ref().map_or_else(ClientTls::public_roots, |tls| tls.anonymous.clone())
    }

    /// An HTTP client as an end user's: trusting the stack's CA.
    pub fn http(&self) -> reqwest::ClientBuilder {
        self.client_tls().reqwest()
    }

    /// A gRPC channel to `url` as an end user's client, connected.
    pub async fn channel(&self, url: &str) -> anyhow::Result<tonic::transport::Channel> {
        Ok(GrpcTarget::new(url, &self.client_tls())?.connect().await?)
    }

    /// A URL on the authorization server's HTTP listener.
    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&self.issuer)
            .and_then(|u| u.join(path))
            .unwrap_or_else(|e| unreachable!("the issuer is an http URL: {e}"))
    }

    pub async fn resource(&self) -> Result<ResourceClient, ClientError> {
        ResourceClient::connect(&self.resource_url(), &self.client_tls()).await
    }

    async fn metadata(&self) -> Result<ServerMetadata, ClientError> {
        discover(&self.http().build()?, &self.issuer).await
    }

    /// An OAuth client (the `oauth2` crate underneath) for `identity`.
    pub async fn client(&self, identity: &ClientIdentity) -> Result<OAuthClient, ClientError> {
        OAuthClient::with_http(
            self.metadata().await?,
            identity.clone(),
            self.clock.shared(),
            self.http(),
        )
    }

    /// A scripted resource owner with a browser that trusts the stack's CA.
    pub fn owner(&self) -> Result<ScriptedOwner, ClientError> {
        ScriptedOwner::with_http(self.http())
    }

    /// The public native client (PKCE, no secret).
    pub fn cli_client(&self) -> ClientIdentity {
        demo_data::cli_client()
    }

    /// The confidential web client (secret + PKCE).
    pub fn web_client(&self) -> ClientIdentity {
        demo_data::web_client(&self.secrets)
    }

    /// The machine client (client credentials, `reports:read`).
    pub fn reporter_client(&self) -> ClientIdentity {
        demo_data::reporter_client(&self.secrets)
    }

    /// A machine client (mis)configured with `notes:read`.
    pub fn backup_client(&self) -> ClientIdentity {
        demo_data::backup_client(&self.secrets)
    }

    /// A machine client whose tokens are for another API (`aud` = `other-api`).
    pub fn other_api_client(&self) -> ClientIdentity {
        demo_data::other_api_client(&self.secrets)
    }

    /// The resource server's own identity at the authorization server (the
    /// quickstart shows the exchange it makes for the notes store).
    pub fn resource_server_client(&self) -> ClientIdentity {
        let mut identity = demo_data::resource_server_client(&self.secrets);
        if self.tls.as_ref().is_some_and(|tls| tls.mutual == Mutual::Internal) {
            // Registered for tls_client_auth: its certificate, no secret.
            identity.client_secret = None;
        }
        identity
    }

    /// Starts a signing-key rotation, as `auth-server admin rotate-keys` does.
    pub async fn rotate_keys(&self) -> anyhow::Result<String> {
        let core = &self.auth_core;
        Ok(core.signer().rotate(core.store(), core.now()).await?)
    }

    /// The authorization-code flow, start to finish: the client builds the
    /// request, the owner signs in and approves on the real pages, the browser
    /// carries the code to the client's loopback listener, the client redeems it.
    pub async fn sign_in(
        &self,
        identity: &ClientIdentity,
        username: &str,
        scopes: &[&str],
    ) -> anyhow::Result<TokenSet> {
        let client = self.client(identity).await?;
        let loopback = LoopbackRedirect::bind().await?;
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        let pending = client.authorization_url(&scopes, &loopback.redirect_uri())?;
        let waiting = tokio::spawn(loopback.wait());
        let mut owner = self.owner()?;
        let back = approve(&mut owner, &pending.url, username, password_of(username)?).await?;
        let redirect = back.location().context("consent did not redirect")?;
        owner.get(&redirect).await?;
        let callback = within("the redirect to reach the client", waiting).await???;
        Ok(client.finish_authorization(pending, &callback).await?)
    }

    /// Stops every service (health NOT_SERVING, then drain) and waits for them.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.running.stop().await
    }
}

/// What the harness sees inside a protected service: its token guard's
/// revocation denylist, key cache and access log.
#[cfg(feature = "test-support")]
struct Inside {
    denylist: tollgate_service_kit::revocation::Denylist,
    keys: tollgate_service_kit::jwks::JwksCache,
    access_log: tokio::sync::broadcast::Sender<tollgate_service_kit::auth::AuthContext>,
}

#[cfg(feature = "test-support")]
impl Inside {
    fn of(guard: &tollgate_service_kit::protect::TokenGuard) -> Self {
        Self {
            denylist: guard.denylist.clone(),
            keys: guard.jwks.clone(),
            access_log: guard.access_log.clone(),
        }
    }
}

#[cfg(feature = "test-support")]
impl TestStack {
    /// Has the resource server and the notes store fetch the revocation
    /// denylist now, and returns once both enforce it: what their periodic sync
    /// does within one interval (a bound service-kit's own tests prove), done on
    /// the test's cue instead of the clock's.
    pub async fn sync_denylists(&self) -> anyhow::Result<()> {
        for (name, inside) in
            [("resource server", &self.resource_guard), ("notes store", &self.notes_guard)]
        {
            within(&format!("the {name}'s denylist to sync"), async {
                loop {
                    match inside.denylist.sync_now().await {
                        Ok(()) => return Ok(()),
                        // Slow or unreachable: as the service itself would at its
                        // next tick, try again.
                        Err(err) if err.is_transient() => {}
                        Err(err) => return Err(err),
                    }
                }
            })
            .await?
            .with_context(|| format!("syncing the {name}'s denylist"))?;
        }
        Ok(())
    }

    /// Waits until the resource server's key cache holds `kid` (its periodic
    /// refresh, every second in this stack).
    pub async fn wait_until_resource_server_knows(&self, kid: &str) -> anyhow::Result<()> {
        let keys = &self.resource_guard.keys;
        let mut updates = keys.watch();
        within(&format!("the resource server to learn key {kid}"), async {
            while !keys.current().is_some_and(|s| s.keys.contains(kid)) {
                updates.changed().await?;
            }
            Ok::<_, anyhow::Error>(())
        })
        .await?
    }

    /// Who the resource server admits from now on, call by call.
    pub fn resource_access(
        &self,
    ) -> tokio::sync::broadcast::Receiver<tollgate_service_kit::auth::AuthContext> {
        self.resource_guard.access_log.subscribe()
    }

    /// Who the notes store admits from now on, call by call.
    pub fn notes_access(
        &self,
    ) -> tokio::sync::broadcast::Receiver<tollgate_service_kit::auth::AuthContext> {
        self.notes_guard.access_log.subscribe()
    }

    /// Who the ledger admits from now on, call by call.
    pub fn ledger_access(
        &self,
    ) -> tokio::sync::broadcast::Receiver<tollgate_service_kit::auth::AuthContext> {
        self.ledger_guard.access_log.subscribe()
    }
}

/// Where `program` is on the `PATH`, if it is (the measurement binaries pin
/// processes with `taskset` and raise priority with `chrt` when they can).
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}

/// `future`, or an error naming `what` after [`PATIENCE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(PATIENCE, future)
        .await
        .map_err(|_| anyhow::anyhow!("gave up after {PATIENCE:?} waiting for {what}"))
}

/// A gRPC channel to `url`, connected: one HTTP/2 connection its clients share.
pub async fn channel(url: String) -> anyhow::Result<tonic::transport::Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url)?.connect().await?)
}

/// The demo password of a demo user.
pub fn password_of(username: &str) -> anyhow::Result<&'static str> {
    PASSWORDS
        .iter()
        .find(|(name, _)| *name == username)
        .map(|(_, password)| *password)
        .with_context(|| format!("{username} is not a demo user"))
}

/// The resource owner opens the authorization URL and signs in. Returns the
/// sign-in page and what followed it: the consent page, or, if they approved
/// this before, the redirect to the client.
pub async fn sign_in(
    owner: &mut ScriptedOwner,
    authorization_url: &url::Url,
    username: &str,
    password: &str,
) -> anyhow::Result<(Page, Page)> {
    let login = owner.get(authorization_url).await?;
    anyhow::ensure!(login.status == 200, "authorization page: {} {}", login.status, login.body);
    let signed_in = owner
        .submit(&login, "/authorize/login", &[("username", username), ("password", password)])
        .await?;
    anyhow::ensure!(signed_in.status == 303, "sign-in: {} {}", signed_in.status, signed_in.body);
    let next = owner.follow(&signed_in).await?;
    Ok((login, next))
}

/// [`sign_in`], expecting the consent page.
pub async fn sign_in_to_consent(
    owner: &mut ScriptedOwner,
    authorization_url: &url::Url,
    username: &str,
    password: &str,
) -> anyhow::Result<(Page, Page)> {
    let (login, consent) = sign_in(owner, authorization_url, username, password).await?;
    anyhow::ensure!(consent.status == 200, "consent page: {}", consent.status);
    Ok((login, consent))
}

/// The resource owner's part: open the authorization URL, sign in, approve
/// (unless they approved this before: then no consent page is shown).
/// Returns the redirect to the client.
pub async fn approve(
    owner: &mut ScriptedOwner,
    authorization_url: &url::Url,
    username: &str,
    password: &str,
) -> anyhow::Result<Page> {
    let (_, next) = sign_in(owner, authorization_url, username, password).await?;
    if next.status == 303 {
        return Ok(next); // consent remembered
    }
    anyhow::ensure!(next.status == 200, "consent page: {}", next.status);
    let decided = owner.submit(&next, "/authorize/consent", &[("decision", "approve")]).await?;
    anyhow::ensure!(decided.status == 303, "consent: {} {}", decided.status, decided.body);
    Ok(decided)
}

/// Waits for a service's overall health (`""`) to be `SERVING`, following the
/// health Watch stream (no polling, no sleeps), for at most [`PATIENCE`].
pub async fn wait_until_serving(addr: SocketAddr) -> anyhow::Result<()> {
    wait_until_serving_at(&format!("http://{addr}"), &ClientTls::public_roots()).await
}

/// [`wait_until_serving`] at `url`, over TLS with `tls` for `https://`.
pub async fn wait_until_serving_at(url: &str, tls: &ClientTls) -> anyhow::Result<()> {
    within(&format!("{url} to be SERVING"), async {
        let channel = GrpcTarget::new(url, tls)?.connect().await?;
        let mut stream = HealthClient::new(channel)
            .watch(HealthCheckRequest { service: String::new() })
            .await?
            .into_inner();
        while let Some(update) = stream.next().await {
            if update?.status == ServingStatus::Serving as i32 {
                return Ok(());
            }
        }
        anyhow::bail!("the health stream ended before SERVING")
    })
    .await?
}

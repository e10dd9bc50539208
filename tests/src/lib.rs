//! The end-to-end harness: the real services, started in-process on free ports
//! with a fresh database each, driven the way the sequence diagrams in
//! `docs/flows.md` read.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let stack = tollgate_e2e::TestStack::start().await?;
//! let tokens = stack.sign_in(&stack.cli_client(), "alice", &["notes:read"]).await?;
//! let notes = stack.resource().await?.list_notes(&tokens.access_token, "me").await?;
//! # Ok(()) }
//! ```
//!
//! Time is a [`ManualClock`] shared by every service: tests move it instead of
//! sleeping. Readiness is the services' gRPC health turning `SERVING`, watched,
//! not polled on a timer.
#![forbid(unsafe_code)]

pub mod demo_data;
pub mod forge;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tempfile::TempDir;
use tokio::sync::broadcast;
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
use tollgate_service_kit::auth::AuthContext;
use tollgate_service_kit::jwks::JwksCache;
use tollgate_service_kit::revocation::Denylist;
use tollgate_token::Secret;
use tollgate_token::{Clock, ManualClock};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

pub use demo_data::{DemoSecrets, PASSWORDS};
pub use tollgate_auth_server::Config as AuthConfig;
pub use tollgate_notes_store::Config as NotesConfig;
pub use tollgate_resource_server::Config as ResourceConfig;

/// Every service's configuration, before they start. The resource server's and
/// the notes store's issuer and authorization-server URL are filled in once the
/// authorization server is bound (unless a tweak set them).
pub struct StackConfig {
    pub auth: AuthConfig,
    pub resource: ResourceConfig,
    pub notes: NotesConfig,
}

/// Adjusts the services' configuration before they start.
pub type Tweak = Box<dyn FnOnce(&mut StackConfig) + Send>;

/// How to start a [`TestStack`].
pub struct StackOptions {
    pub clock: Arc<dyn Clock>,
    pub manual_clock: Option<Arc<ManualClock>>,
    pub tweak: Tweak,
}

impl Default for StackOptions {
    /// A manual clock starting at the current time; configuration untouched.
    fn default() -> Self {
        let manual = Arc::new(ManualClock::starting_now());
        Self { clock: manual.clone(), manual_clock: Some(manual), tweak: Box::new(|_| {}) }
    }
}

impl StackOptions {
    pub fn tweak(mut self, tweak: impl FnOnce(&mut StackConfig) + Send + 'static) -> Self {
        self.tweak = Box::new(tweak);
        self
    }
}

/// The running services (authorization server, resource server, notes store)
/// with the demo clients and users registered.
pub struct TestStack {
    /// The time every service reads.
    pub clock: Arc<dyn Clock>,
    /// The same clock, when it is a manual one the test moves.
    manual_clock: Option<Arc<ManualClock>>,
    pub issuer: String,
    pub auth_http: SocketAddr,
    pub auth_grpc: SocketAddr,
    pub resource_grpc: SocketAddr,
    pub notes_grpc: SocketAddr,
    pub secrets: DemoSecrets,
    /// The resource server's copy of the revocation denylist.
    pub denylist: Denylist,
    /// The resource server's cache of the authorization server's keys.
    pub resource_keys: JwksCache,
    /// The authorization server's protocol core (keys, storage) for tests that
    /// act as its operator.
    pub auth_core: Arc<OAuthCore<SqlStore>>,
    /// Who each protected service admitted, call by call.
    pub resource_access: broadcast::Sender<AuthContext>,
    pub notes_access: broadcast::Sender<AuthContext>,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
    _dir: TempDir,
}

impl TestStack {
    /// Every service on a manual clock, with the default configuration.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(StackOptions::default()).await
    }

    /// Every service with `options.tweak` applied to its configuration.
    pub async fn start_with(options: StackOptions) -> anyhow::Result<Self> {
        let StackOptions { clock, manual_clock, tweak } = options;
        let dir = tempfile::tempdir()?;
        let secrets = DemoSecrets::generate();
        let bootstrap = dir.path().join("bootstrap.toml");
        std::fs::write(&bootstrap, demo_data::bootstrap_toml(&secrets))?;

        let mut config = StackConfig {
            auth: AuthConfig::local(dir.path().join("auth")),
            resource: ResourceConfig::local(dir.path().join("resource"), ""),
            notes: NotesConfig::local(dir.path().join("notes"), ""),
        };
        config.auth.bootstrap = Some(bootstrap);
        for tokens in [&mut config.resource.tokens, &mut config.notes.tokens] {
            // Fast, so revocation and key tests wait a second rather than minutes.
            tokens.revocation_sync_secs = 1;
            tokens.jwks_refresh_secs = 1;
            tokens.jwks_min_refetch_secs = 1;
        }
        tweak(&mut config);
        let StackConfig {
            auth: auth_config,
            resource: mut resource_config,
            notes: mut notes_config,
        } = config;

        let auth = tollgate_auth_server::Application::build(auth_config, clock.clone())
            .await
            .context("starting the authorization server")?;
        let issuer = auth.issuer().to_owned();
        let auth_core = auth.core();
        let (auth_http, auth_grpc) = (auth.http_addr(), auth.grpc_addr());
        let mut stops = Vec::new();
        let mut tasks = Vec::new();
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(auth.run_until_stopped(async move {
            let _ = stopped.await;
        })));

        // The notes store, identified at the authorization server for the denylist.
        let tokens = &mut notes_config.tokens;
        if tokens.issuer.is_empty() {
            tokens.issuer = issuer.clone();
        }
        tokens.auth_grpc_url = format!("http://{auth_grpc}");
        if tokens.client_id.is_none() {
            tokens.client_id = Some(demo_data::NOTES_STORE_CLIENT.into());
            tokens.client_secret = Some(Secret::new(&secrets.notes_store));
        }
        let notes = tollgate_notes_store::Application::build(notes_config, clock.clone())
            .await
            .context("starting the notes store")?;
        let notes_grpc = notes.grpc_addr();
        let notes_access = notes.guard().access_log.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(notes.run_until_stopped(async move {
            let _ = stopped.await;
        })));

        // The resource server: exchanges user tokens for the notes store.
        let tokens = &mut resource_config.tokens;
        if tokens.issuer.is_empty() {
            tokens.issuer = issuer.clone();
        }
        tokens.auth_grpc_url = format!("http://{auth_grpc}");
        if tokens.client_id.is_none() {
            tokens.client_id = Some(demo_data::RESOURCE_SERVER_CLIENT.into());
            tokens.client_secret = Some(Secret::new(&secrets.resource_server));
        }
        resource_config.settings.notes_store_url = format!("http://{notes_grpc}");
        let resource = tollgate_resource_server::Application::build(resource_config, clock.clone())
            .await
            .context("starting the resource server")?;
        let resource_grpc = resource.grpc_addr();
        let denylist = resource.guard().denylist.clone();
        let resource_keys = resource.guard().jwks.clone();
        let resource_access = resource.guard().access_log.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tasks.push(tokio::spawn(resource.run_until_stopped(async move {
            let _ = stopped.await;
        })));

        let stack = Self {
            clock,
            manual_clock,
            issuer,
            auth_http,
            auth_grpc,
            resource_grpc,
            notes_grpc,
            secrets,
            denylist,
            resource_keys,
            auth_core,
            resource_access,
            notes_access,
            stops,
            tasks,
            _dir: dir,
        };
        wait_until_serving(stack.auth_grpc).await.context("authorization server health")?;
        wait_until_serving(stack.notes_grpc).await.context("notes store health")?;
        wait_until_serving(stack.resource_grpc).await.context("resource server health")?;
        Ok(stack)
    }

    /// Moves the shared clock forward (tests of expiry). Panics on a real clock:
    /// that is a mistake in the test, not a condition to handle.
    pub fn advance(&self, secs: i64) {
        match &self.manual_clock {
            Some(clock) => clock.advance(secs),
            None => panic!("this stack runs on the system clock"),
        }
    }

    pub fn resource_url(&self) -> String {
        format!("http://{}", self.resource_grpc)
    }

    pub fn notes_url(&self) -> String {
        format!("http://{}", self.notes_grpc)
    }

    pub fn auth_grpc_url(&self) -> String {
        format!("http://{}", self.auth_grpc)
    }

    /// A URL on the authorization server's HTTP listener.
    pub fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&self.issuer)
            .and_then(|u| u.join(path))
            .unwrap_or_else(|e| unreachable!("the issuer is an http URL: {e}"))
    }

    pub async fn resource(&self) -> Result<ResourceClient, ClientError> {
        ResourceClient::connect(&self.resource_url()).await
    }

    pub async fn metadata(&self) -> Result<ServerMetadata, ClientError> {
        discover(&reqwest::Client::new(), &self.issuer).await
    }

    /// An OAuth client (the `oauth2` crate underneath) for `identity`.
    pub async fn client(&self, identity: &ClientIdentity) -> Result<OAuthClient, ClientError> {
        OAuthClient::new(self.metadata().await?, identity.clone(), self.clock.clone())
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

    /// The resource server's own client identity.
    pub fn resource_server_client(&self) -> ClientIdentity {
        demo_data::resource_server_client(&self.secrets)
    }

    /// Waits until the resource server's denylist holds `jti` (the next sync
    /// after its revocation), and returns how long that took.
    pub async fn wait_until_denied(&self, jti: &str) -> std::time::Duration {
        let started = std::time::Instant::now();
        let mut updates = self.denylist.watch();
        while !self.denylist.contains(jti) {
            if updates.changed().await.is_err() {
                break;
            }
        }
        started.elapsed()
    }

    /// Starts a signing-key rotation, as `auth-server admin rotate-keys` does.
    pub async fn rotate_keys(&self) -> anyhow::Result<String> {
        let core = &self.auth_core;
        Ok(core.signer().rotate(core.store(), core.now()).await?)
    }

    /// Waits until the resource server's key cache holds `kid`.
    pub async fn wait_until_resource_server_knows(&self, kid: &str) {
        let mut updates = self.resource_keys.watch();
        while !self.resource_keys.current().is_some_and(|s| s.keys.contains(kid)) {
            if updates.changed().await.is_err() {
                return;
            }
        }
    }

    /// A machine client (mis)configured with `notes:read`.
    pub fn backup_client(&self) -> ClientIdentity {
        demo_data::backup_client(&self.secrets)
    }

    /// A machine client whose tokens are for another API (`aud` = `other-api`).
    pub fn other_api_client(&self) -> ClientIdentity {
        demo_data::other_api_client(&self.secrets)
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
        let mut owner = ScriptedOwner::new()?;
        let back = approve(&mut owner, &pending.url, username, password_of(username)?).await?;
        let redirect = back.location().context("consent did not redirect")?;
        owner.get(&redirect).await?;
        let callback = waiting.await??;
        Ok(client.finish_authorization(pending, &callback).await?)
    }

    /// Stops every service (health NOT_SERVING, then drain) and waits for them.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            task.await??;
        }
        Ok(())
    }
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
/// health Watch stream (no polling, no sleeps).
pub async fn wait_until_serving(addr: SocketAddr) -> anyhow::Result<()> {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.connect().await?;
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
}

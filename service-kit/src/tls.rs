//! TLS for every listener and every outgoing connection, configured the same
//! way in every service ([`TlsConfig`], `TLS_*`).
//!
//! - rustls with its `ring` crypto provider, chosen once for the workspace:
//!   ring already signs and verifies the platform's tokens, so the TLS stack
//!   adds no second crypto library (aws-lc-rs would add a C and assembly build
//!   for no gain here). TLS 1.2 and 1.3 with rustls' safe defaults.
//! - A listener given a certificate speaks only TLS ([`ServerTls`]); given a
//!   client CA as well, it requires (gRPC) or asks for (the authorization
//!   server's public HTTP listener) a client certificate from that CA: mutual
//!   TLS between services, RFC 8705 client authentication at `/token`.
//! - An outgoing connection to an `https://` URL always verifies the server's
//!   certificate and name against the CA bundle (`TLS_CA`, else the public web
//!   PKI roots) and never falls back to plaintext; this service's certificate
//!   is its client certificate ([`ClientTls`], [`GrpcTarget`]). `http://` URLs
//!   are plaintext, for local development only.
//! - Certificates, keys and CA bundles are read again when their files change
//!   (checked every `TLS_RELOAD_INTERVAL`): new connections use the new files,
//!   connections already open keep the ones they were made with. A change that
//!   does not load (a key that does not match its certificate, a file half
//!   written) is logged and the previous files stay in use.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use futures::{Stream, StreamExt as _};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::transport::{Channel, Endpoint, Uri};

pub const DEFAULT_RELOAD_INTERVAL: u64 = 10;
/// How long a client has to finish the TLS handshake on a gRPC listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS settings of every Tollgate binary (`TLS_*`; each runs in its own
/// environment).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct TlsConfig {
    /// PEM certificate chain: this service's identity, served on its listeners
    /// and presented as its client certificate. Without it the listeners speak
    /// plaintext (local development only).
    #[arg(id = "tls_cert", long = "tls-cert", env = "TLS_CERT", requires = "tls_key")]
    pub cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(id = "tls_key", long = "tls-key", env = "TLS_KEY", requires = "tls_cert")]
    pub key: Option<PathBuf>,
    /// PEM CA certificates whose client certificates the listeners accept:
    /// with it a gRPC listener refuses, at the handshake, a connection without
    /// one (mutual TLS). Needs --tls-cert.
    #[arg(
        id = "tls_client_ca",
        long = "tls-client-ca",
        env = "TLS_CLIENT_CA",
        requires = "tls_cert"
    )]
    pub client_ca: Option<PathBuf>,
    /// PEM CA certificates trusted for outgoing https:// connections. Without
    /// it, the public web PKI's roots.
    #[arg(id = "tls_ca", long = "tls-ca", env = "TLS_CA")]
    pub ca: Option<PathBuf>,
    /// How often the files above are checked for changes, seconds.
    #[arg(id = "tls_reload_interval", long = "tls-reload-interval", env = "TLS_RELOAD_INTERVAL", default_value_t = DEFAULT_RELOAD_INTERVAL)]
    pub reload_interval_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_ca: None,
            ca: None,
            reload_interval_secs: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

impl TlsConfig {
    /// This service's certificate and key, trusting `ca` and (with
    /// `mutual`) requiring client certificates from it: what the tests and
    /// the quickstart give each service of an in-process deployment.
    pub fn for_service(cert: PathBuf, key: PathBuf, ca: PathBuf, mutual: bool) -> Self {
        Self {
            cert: Some(cert),
            key: Some(key),
            client_ca: mutual.then(|| ca.clone()),
            ca: Some(ca),
            reload_interval_secs: DEFAULT_RELOAD_INTERVAL,
        }
    }

    fn reload_interval(&self) -> Duration {
        Duration::from_secs(self.reload_interval_secs.max(1))
    }

    fn identity(&self) -> anyhow::Result<Option<(&Path, &Path)>> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert, key))),
            (None, None) => Ok(None),
            _ => anyhow::bail!("TLS_CERT and TLS_KEY go together"),
        }
    }
}

/// Which kind of listener a [`ServerTls`] serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// gRPC (HTTP/2): with a client CA, a client certificate is required.
    Grpc,
    /// The authorization server's HTTP listener (HTTP/1.1): with a client CA,
    /// a client certificate is asked for but not required, since browsers and
    /// public clients have none (RFC 8705 §2, §5).
    PublicHttp,
}

/// A listener's TLS: the server configuration new connections are accepted
/// with, kept current with the files.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<Watched<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.config.paths).finish()
    }
}

impl ServerTls {
    /// The listener's TLS, or `None` (plaintext) when no certificate is
    /// configured. Must be called within a tokio runtime (the reload task).
    pub fn from_config(config: &TlsConfig, listener: Listener) -> anyhow::Result<Option<Self>> {
        let Some((cert, key)) = config.identity()? else {
            anyhow::ensure!(config.client_ca.is_none(), "TLS_CLIENT_CA needs TLS_CERT and TLS_KEY");
            return Ok(None);
        };
        let mut paths = vec![cert.to_owned(), key.to_owned()];
        paths.extend(config.client_ca.clone());
        let watched = Watched::start(paths, config.reload_interval(), move |files| {
            server_config(&files[0], &files[1], files.get(2).map(Vec::as_slice), listener)
        })?;
        Ok(Some(Self { config: watched }))
    }

    /// An acceptor with the current files, for one new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config.current())
    }

    /// Reads the files now if they changed (otherwise every
    /// `TLS_RELOAD_INTERVAL`); whether a new configuration was loaded.
    pub async fn reload_now(&self) -> bool {
        self.config.check().await
    }
}

fn server_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
    listener: Listener,
) -> anyhow::Result<ServerConfig> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider);
            let verifier = match listener {
                Listener::Grpc => verifier,
                Listener::PublicHttp => verifier.allow_unauthenticated(),
            };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let (chain, key) = identity(cert, key)?;
    let mut config =
        builder.with_single_cert(chain, key).context("the certificate and key do not match")?;
    config.alpn_protocols = vec![match listener {
        Listener::Grpc => b"h2".to_vec(),
        Listener::PublicHttp => b"http/1.1".to_vec(),
    }];
    Ok(config)
}

/// A gRPC listener's connections after the TLS handshake. Each handshake
/// runs in its own task, within [`HANDSHAKE_TIMEOUT`], so clients that
/// connect and stall cannot hold up the accept loop; how many there can be
/// at once is the listener's connection limit (each holds one of its slots,
/// [`crate::limits::limited_incoming`]). A failed handshake (no client
/// certificate where one is required, an untrusted one, plaintext) closes
/// that connection and is logged at debug; the listener goes on. Each
/// connection carries its peer's certificates (`tonic::Request::peer_certs`).
pub fn tls_incoming<S, IO>(
    incoming: S,
    tls: ServerTls,
) -> impl Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<IO>>> + Send + 'static
where
    S: Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (ready, handshaken) = tokio::sync::mpsc::channel(READY_CONNECTIONS);
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let accepted = tokio::select! {
                // The server stopped taking connections: close the listener now.
                () = ready.closed() => break,
                accepted = incoming.next() => accepted,
            };
            let tcp = match accepted {
                None => break,
                Some(Ok(tcp)) => tcp,
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "accept failed");
                    continue;
                }
            };
            let (acceptor, ready) = (tls.acceptor(), ready.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(err)) => tracing::debug!(error = %err, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(handshaken)
}

/// Connections past their handshake, waiting for the server to take them.
const READY_CONNECTIONS: usize = 64;

/// Outgoing TLS: the CA bundle servers are verified against and this
/// service's client certificate, kept current with the files.
#[derive(Clone)]
pub struct ClientTls {
    configs: Arc<Watched<ClientConfigs>>,
    identity: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("files", &self.configs.paths).finish()
    }
}

/// The same trust and identity, for each protocol's ALPN.
struct ClientConfigs {
    grpc: Arc<ClientConfig>,
    http: Arc<ClientConfig>,
}

impl ClientConfigs {
    fn for_both(config: ClientConfig) -> Self {
        let mut grpc = config.clone();
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        let mut http = config;
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { grpc: Arc::new(grpc), http: Arc::new(http) }
    }
}

impl ClientTls {
    /// Must be called within a tokio runtime when files are configured (the
    /// reload task).
    pub fn from_config(config: &TlsConfig) -> anyhow::Result<Self> {
        let identity = config.identity()?;
        let mut paths = Vec::new();
        if let Some((cert, key)) = identity {
            paths.extend([cert.to_owned(), key.to_owned()]);
        }
        paths.extend(config.ca.clone());
        let has_identity = identity.is_some();
        let configs = Watched::start(paths, config.reload_interval(), move |files| {
            let (identity, ca) = match has_identity {
                true => (Some((&files[0], &files[1])), files.get(2)),
                false => (None, files.first()),
            };
            let config = client_config(identity, ca.map(Vec::as_slice))?;
            Ok(ClientConfigs::for_both(config))
        })?;
        Ok(Self { configs, identity: has_identity })
    }

    /// Whether it presents a client certificate (TLS_CERT, TLS_KEY).
    pub fn has_identity(&self) -> bool {
        self.identity
    }

    /// Trusts the CA certificates `ca_pem` and presents `identity` (a PEM
    /// certificate chain and key) if given: for tools and tests that hold the
    /// PEM rather than files. Never reloaded.
    pub fn from_pem(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> anyhow::Result<Self> {
        let identity = identity.map(|(cert, key)| (cert.to_vec(), key.to_vec()));
        let has_identity = identity.is_some();
        let ca_pem = ca_pem.to_vec();
        let configs = Watched::start(Vec::new(), Duration::MAX, move |_| {
            let config = client_config(identity.as_ref().map(|(c, k)| (c, k)), Some(&ca_pem))?;
            Ok(ClientConfigs::for_both(config))
        })?;
        Ok(Self { configs, identity: has_identity })
    }

    /// The public web PKI's roots, no client certificate: for clients that
    /// were given no TLS settings.
    /// Built once per process: every default JWKS configuration and
    /// plaintext client asks for it, and it never changes.
    pub fn public_roots() -> Self {
        static PUBLIC: std::sync::LazyLock<ClientTls> = std::sync::LazyLock::new(|| {
            #[allow(clippy::expect_used)]
            ClientTls::from_config(&TlsConfig::default()).expect("the built-in roots always load")
        });
        PUBLIC.clone()
    }

    /// Changes each time the files are loaded again: a holder of long-lived
    /// connections compares it to know when to make new ones (a connection
    /// keeps the certificate it was made with).
    pub fn generation(&self) -> u64 {
        self.configs.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The configuration for a new HTTP/2 (gRPC) connection.
    pub fn grpc_config(&self) -> Arc<ClientConfig> {
        self.configs.current().grpc.clone()
    }

    /// The configuration for a new HTTP/1.1 client (e.g. reqwest's
    /// `use_preconfigured_tls`).
    pub fn http_config(&self) -> Arc<ClientConfig> {
        self.configs.current().http.clone()
    }

    /// A reqwest client builder that trusts this CA bundle and presents this
    /// certificate. Built from the files current now: a long-lived client
    /// is built again when [`Self::http_config`] changes.
    pub fn reqwest(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().use_preconfigured_tls((*self.http_config()).clone())
    }

    /// Reads the files now if they changed (otherwise every
    /// `TLS_RELOAD_INTERVAL`).
    pub async fn reload_now(&self) -> bool {
        self.configs.check().await
    }
}

fn client_config(
    identity: Option<(&Vec<u8>, &Vec<u8>)>,
    ca: Option<&[u8]>,
) -> anyhow::Result<ClientConfig> {
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None => Arc::new(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key) = self::identity(cert, key)?;
            builder
                .with_client_auth_cert(chain, key)
                .context("the certificate and key do not match")?
        }
    })
}

/// Where a gRPC client connects: an `http://` URL in plaintext, an `https://`
/// one over TLS with the server's name verified, never plaintext.
#[derive(Debug, Clone)]
pub struct GrpcTarget {
    endpoint: Endpoint,
    tls: Option<Connector>,
    /// The URL's host and port: what [`GrpcTarget::balanced`] resolves.
    host: String,
    port: u16,
}

/// Why a gRPC URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?} is not an http:// or https:// URL with a host")]
    BadUrl(String),
    #[error("{url:?}: {source}")]
    Endpoint {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl GrpcTarget {
    pub fn new(url: &str, tls: &ClientTls) -> Result<Self, TargetError> {
        let bad = || TargetError::BadUrl(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let authority = uri.authority().ok_or_else(bad)?.clone();
        let endpoint = |url: String| {
            Endpoint::from_shared(url.clone())
                .map_err(|source| TargetError::Endpoint { url: url.clone(), source })
        };
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_owned();
        match uri.scheme_str() {
            Some("http") => Ok(Self {
                endpoint: endpoint(url.to_owned())?,
                tls: None,
                port: authority.port_u16().unwrap_or(80),
                host,
            }),
            Some("https") => {
                let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
                let port = authority.port_u16().unwrap_or(443);
                // tonic refuses an https:// URI with a connector of one's own
                // (its TLS settings are fixed when the channel is made, ours
                // follow the files), so the channel is told the plain URI to
                // connect to, the connector makes it TLS, and the requests
                // carry the https origin.
                let plain = endpoint(format!("http://{authority}"))?.origin(uri.clone());
                Ok(Self {
                    endpoint: plain,
                    tls: Some(Connector {
                        tls: tls.clone(),
                        server_name,
                        address: format!("{host}:{port}"),
                    }),
                    host,
                    port,
                })
            }
            _ => Err(bad()),
        }
    }

    /// Connects to `addr` instead of the URL's host, still verifying the
    /// certificate against the URL's name (one replica of several behind a
    /// name, in tests).
    pub fn via(mut self, addr: std::net::SocketAddr) -> Self {
        match &mut self.tls {
            Some(connector) => connector.address = addr.to_string(),
            None => {
                let origin = self.endpoint.uri().clone();
                if let Ok(endpoint) = Endpoint::from_shared(format!("http://{addr}")) {
                    self.endpoint = endpoint.origin(origin);
                }
            }
        }
        self
    }

    /// Further settings of the channel (timeouts, keep-alive).
    pub fn configure(mut self, settings: impl FnOnce(Endpoint) -> Endpoint) -> Self {
        self.endpoint = settings(self.endpoint);
        self
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The URL's host (without brackets for IPv6).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The URL's port (or its scheme's).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A channel that balances calls over every SERVING address the host
    /// resolves to ([`crate::balance`]), resolved again every
    /// [`crate::balance::RESOLVE_INTERVAL`].
    pub fn balanced(self) -> crate::balance::Balanced {
        crate::balance::Balanced::new(self, crate::balance::RESOLVE_INTERVAL)
    }

    /// A channel that connects on first use.
    pub fn connect_lazy(self) -> Channel {
        match self.tls {
            None => self.endpoint.connect_lazy(),
            Some(connector) => self.endpoint.connect_with_connector_lazy(connector),
        }
    }

    pub async fn connect(self) -> Result<Channel, tonic::transport::Error> {
        match self.tls {
            None => self.endpoint.connect().await,
            Some(connector) => self.endpoint.connect_with_connector(connector).await,
        }
    }
}

/// Connects over TCP, then TLS with the client configuration current at that
/// moment.
#[derive(Debug, Clone)]
struct Connector {
    tls: ClientTls,
    server_name: ServerName<'static>,
    address: String,
}

impl tower::Service<Uri> for Connector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let config = self.tls.configs.current().grpc.clone();
        let (name, address) = (self.server_name.clone(), self.address.clone());
        Box::pin(async move {
            let tcp = TcpStream::connect(address).await?;
            tcp.set_nodelay(true)?;
            let stream = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// The workspace's one crypto provider (see the module's documentation).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn identity(
    cert: &[u8],
    key: &[u8],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    anyhow::ensure!(!chain.is_empty(), "the certificate file holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(key).context("the key file holds no private key")?;
    Ok((chain, key))
}

fn roots(pem: &[u8]) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.context("the CA file is not PEM")?).context("a CA certificate")?;
    }
    anyhow::ensure!(!roots.is_empty(), "the CA file holds no certificate");
    Ok(Arc::new(roots))
}

/// Builds a value from the files' contents, in the order of their paths.
type Build<T> = dyn Fn(&[Vec<u8>]) -> anyhow::Result<T> + Send + Sync;

/// A value built from files, built again when their contents change.
struct Watched<T> {
    paths: Vec<PathBuf>,
    build: Box<Build<T>>,
    /// The files' contents the current value was built from, and the value.
    current: RwLock<(Vec<Vec<u8>>, Arc<T>)>,
    /// How many times the value was built again.
    generation: std::sync::atomic::AtomicU64,
    /// One check at a time.
    checking: tokio::sync::Mutex<()>,
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Builds the value now (an error if the files do not load) and, if
    /// there are files, checks them every `interval` for as long as the
    /// value is in use.
    fn start(
        paths: Vec<PathBuf>,
        interval: Duration,
        build: impl Fn(&[Vec<u8>]) -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<Arc<Self>> {
        let files = paths
            .iter()
            .map(|path| std::fs::read(path).with_context(|| format!("reading {}", path.display())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let value = build(&files).with_context(|| describe(&paths))?;
        let watched = Arc::new(Self {
            paths,
            build: Box::new(build),
            current: RwLock::new((files, Arc::new(value))),
            generation: std::sync::atomic::AtomicU64::new(0),
            checking: tokio::sync::Mutex::new(()),
        });
        if !watched.paths.is_empty() {
            let weak = Arc::downgrade(&watched);
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    // Ends when the last user of the value is gone.
                    let Some(watched) = weak.upgrade() else { break };
                    watched.check().await;
                }
            });
        }
        Ok(watched)
    }

    fn current(&self) -> Arc<T> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).1.clone()
    }

    /// Reads the files; builds and swaps in a new value if they changed.
    async fn check(&self) -> bool {
        let _one = self.checking.lock().await;
        let mut files = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            match tokio::fs::read(path).await {
                Ok(bytes) => files.push(bytes),
                Err(err) => {
                    tracing::warn!(file = %path.display(), error = %err, "TLS file unreadable; keeping the loaded one");
                    return false;
                }
            }
        }
        if self.current.read().unwrap_or_else(|e| e.into_inner()).0 == files {
            return false;
        }
        match (self.build)(&files) {
            Ok(value) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = (files, Arc::new(value));
                self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
                tracing::info!(files = %describe(&self.paths), "TLS files reloaded");
                true
            }
            Err(err) => {
                // Often a replacement caught half way (the certificate new,
                // the key not yet): the next check loads it.
                tracing::warn!(files = %describe(&self.paths), error = format!("{err:#}"), "TLS files changed but do not load; keeping the loaded ones");
                false
            }
        }
    }
}

fn describe(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

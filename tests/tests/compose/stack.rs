//! Reaching the compose stack from the host: containers by their addresses on
//! Docker's network, `auth-server` resolved to the replica a step should use,
//! and the stack changed only through docker-compose, as an operator would.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_client_app::discovery::discover;
use tollgate_client_app::loopback::LoopbackRedirect;
use tollgate_client_app::oauth::{ClientAuthMethod, ClientIdentity, OAuthClient};
use tollgate_client_app::owner::ScriptedOwner;
use tollgate_client_app::resource::ResourceClient;
use tollgate_client_app::tokens::TokenSet;
use tollgate_service_kit::tls::{ClientTls, GrpcTarget};
use tollgate_token::SystemClock;
use tonic_health::pb::health_client::HealthClient;

/// The issuer, as every container and the host know it (docker-compose.yml's
/// AUTH_ISSUER).
pub const ISSUER: &str = "https://auth.tollgate.localhost:8443";
const ISSUER_HOST: &str = "auth.tollgate.localhost";
pub const AUTH_HTTP_PORT: u16 = 8443;
pub const AUTH_GRPC_PORT: u16 = 50051;
pub const RS_GRPC_PORT: u16 = 50052;
pub const NOTES_GRPC_PORT: u16 = 50053;
/// Longer than any recovery the tests wait for; a bound, not a pause.
const PATIENCE: Duration = Duration::from_secs(90);

async fn run(program: &str, args: &[&str]) -> String {
    // COMPOSE_FILE's paths are relative to the workspace root; tests run in
    // the package's directory.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = tokio::process::Command::new(program)
        .args(args)
        .current_dir(root)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `docker-compose …` on the stack named by COMPOSE_FILE / COMPOSE_PROJECT_NAME.
pub async fn compose(args: &[&str]) -> String {
    run("docker-compose", args).await
}

pub async fn docker(args: &[&str]) -> String {
    run("docker", args).await
}

/// One container of a service, by its address on the compose network.
#[derive(Debug, Clone)]
pub struct Replica {
    pub id: String,
    /// The compose service: also the DNS name its certificate carries.
    pub service: String,
    pub ip: IpAddr,
    pub grpc_port: u16,
}

impl Replica {
    /// When the container last started: unchanged means "not restarted".
    pub async fn started_at(&self) -> String {
        docker(&["inspect", "-f", "{{.State.StartedAt}}", &self.id]).await.trim().to_owned()
    }

    pub async fn resource(&self) -> ResourceClient {
        ResourceClient::new(self.channel(&trust()).await.expect("a resource-server replica"))
    }

    /// The replica's health, over TLS with a service's certificate (the
    /// internal listeners require one).
    pub async fn health(&self) -> HealthClient<tonic::transport::Channel> {
        HealthClient::new(self.channel(&service_identity()).await.unwrap())
    }

    /// A connection to this replica, its certificate verified for the
    /// service's name, with `tls`.
    pub async fn channel(
        &self,
        tls: &ClientTls,
    ) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        self.target(tls).connect().await
    }

    /// Where this replica is, over TLS with `tls`, its certificate checked
    /// for the service's name.
    pub fn target(&self, tls: &ClientTls) -> GrpcTarget {
        let url = format!("https://{}:{}", self.service, self.grpc_port);
        GrpcTarget::new(&url, tls).unwrap().via(SocketAddr::new(self.ip, self.grpc_port))
    }
}

/// Trusts the deployment's CA (made by the `certs` job), with no client
/// certificate: what an application outside the deployment has.
pub fn trust() -> ClientTls {
    ClientTls::from_pem(CERTS.ca.as_bytes(), None).unwrap()
}

/// The resource server's certificate and key: a member of the deployment.
pub fn service_identity() -> ClientTls {
    ClientTls::from_pem(
        CERTS.ca.as_bytes(),
        Some((CERTS.service_cert.as_bytes(), CERTS.service_key.as_bytes())),
    )
    .unwrap()
}

/// The files of the `certs` volume the host-side tests read, once.
struct Certs {
    ca: String,
    service_cert: String,
    service_key: String,
}

static CERTS: std::sync::LazyLock<Certs> = std::sync::LazyLock::new(|| {
    // Read inside a resource-server container, as its user.
    let read = |file: &str| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let output = std::process::Command::new("docker-compose")
            .args(["exec", "-T", "--index=1", "resource-server", "cat", file])
            .current_dir(root)
            .output()
            .expect("docker-compose");
        assert!(
            output.status.success(),
            "reading {file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("PEM")
    };
    Certs {
        ca: read("/certs/ca.pem"),
        service_cert: read("/certs/resource-server.pem"),
        service_key: read("/certs/resource-server.key"),
    }
});

async fn replicas(service: &str, grpc_port: u16) -> Vec<Replica> {
    let mut found = Vec::new();
    for id in compose(&["ps", "-q", service]).await.split_whitespace() {
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            id,
        ])
        .await;
        let ip =
            ip.trim().parse().unwrap_or_else(|_| panic!("{service} {id} has no address: {ip:?}"));
        found.push(Replica { id: id.to_owned(), service: service.to_owned(), ip, grpc_port });
    }
    found.sort_by_key(|r| r.ip);
    found
}

pub async fn auth_replicas() -> [Replica; 2] {
    replicas("auth-server", AUTH_GRPC_PORT).await.try_into().expect("two auth-server replicas")
}

pub async fn notes_store() -> Replica {
    let [notes]: [Replica; 1] =
        replicas("notes-store", NOTES_GRPC_PORT).await.try_into().expect("one notes store");
    notes
}

pub async fn rs_replicas() -> [Replica; 2] {
    replicas("resource-server", RS_GRPC_PORT)
        .await
        .try_into()
        .expect("two resource-server replicas")
}

pub async fn started_at(replicas: &[Replica]) -> Vec<String> {
    let mut times = Vec::new();
    for replica in replicas {
        times.push(replica.started_at().await);
    }
    times
}

/// A secret the stack generated (docker/dev-secrets.sh), read inside a container.
pub async fn secret(name: &str) -> String {
    let [rs, _] = rs_replicas().await;
    docker(&["exec", &rs.id, "cat", &format!("/secrets/{name}")]).await
}

/// Polls `check` until it gives a value, failing after [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every container of `service` passes its health check.
pub async fn wait_healthy(service: &str) {
    eventually(&format!("{service} to be healthy"), || async {
        let ids = compose(&["ps", "-q", service]).await;
        let mut all = !ids.trim().is_empty();
        for id in ids.split_whitespace() {
            let status = docker(&["inspect", "-f", "{{.State.Health.Status}}", id]).await;
            all &= status.trim() == "healthy";
        }
        all.then_some(())
    })
    .await;
}

/// HTTP settings that send `auth-server` to this replica.
pub fn http_via(replica: &Replica) -> reqwest::ClientBuilder {
    trust()
        .reqwest()
        .resolve(ISSUER_HOST, SocketAddr::new(replica.ip, AUTH_HTTP_PORT))
        .timeout(Duration::from_secs(10))
}

/// HTTP settings that reach the issuer the way a browser on the host does:
/// `auth.tollgate.localhost` is the loopback address, the port the one
/// published there (the first replica's).
pub fn http_from_the_host() -> reqwest::ClientBuilder {
    trust()
        .reqwest()
        .resolve(ISSUER_HOST, SocketAddr::from(([127, 0, 0, 1], AUTH_HTTP_PORT)))
        .timeout(Duration::from_secs(10))
}

/// The public CLI client, talking to `replica`.
pub async fn cli_client(replica: &Replica) -> OAuthClient {
    let http = http_via(replica).build().unwrap();
    let metadata = discover(&http, ISSUER).await.expect("metadata");
    let identity = ClientIdentity {
        client_id: "tollgate-cli".into(),
        client_secret: None,
        auth_method: ClientAuthMethod::ClientSecretBasic,
    };
    OAuthClient::with_http(metadata, identity, Arc::new(SystemClock), http_via(replica)).unwrap()
}

/// Alice signs in and approves at `pages`; the client redeems the code at `token`.
pub async fn sign_in(pages: &Replica, token: &Replica, scopes: &[&str]) -> TokenSet {
    let password = secret("alice-password").await;
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    let loopback = LoopbackRedirect::bind().await.unwrap();
    let pending =
        cli_client(pages).await.authorization_url(&scopes, &loopback.redirect_uri()).unwrap();
    let waiting = tokio::spawn(loopback.wait());
    let mut owner = ScriptedOwner::with_http(http_via(pages)).unwrap();
    let back = tollgate_e2e::approve(&mut owner, &pending.url, "alice", &password).await.unwrap();
    owner.get(&back.location().expect("a redirect with the code")).await.unwrap();
    let callback = waiting.await.unwrap().unwrap();
    cli_client(token).await.finish_authorization(pending, &callback).await.unwrap()
}

/// A token endpoint answer.
#[derive(Debug)]
pub struct TokenReply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl TokenReply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!((self.status, self.error()), (status, error), "{:?}", self.body);
    }
}

async fn post_token(
    replica: &Replica,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> TokenReply {
    let http = http_via(replica).build().unwrap();
    let mut request = http.post(format!("{ISSUER}/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            TokenReply { status, body }
        }
        // No answer at all is recorded as such: the tests accept only 200 and 503.
        Err(e) => TokenReply { status: 0, body: serde_json::json!({ "error": e.to_string() }) },
    }
}

pub async fn post_refresh(replica: &Replica, refresh_token: &str) -> TokenReply {
    post_token(
        replica,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "tollgate-cli"),
        ],
    )
    .await
}

pub async fn post_client_credentials(replica: &Replica, id: &str, secret: &str) -> TokenReply {
    post_token(replica, Some((id, secret)), &[("grant_type", "client_credentials")]).await
}

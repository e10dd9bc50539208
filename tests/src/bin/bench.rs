//! `cargo xtask bench`: the platform's own benchmark (docs/performance.md).
//!
//! It starts the real services (release builds) on loopback, each pinned to
//! core 0 with `taskset` when the machine has two cores, and drives them from
//! this process on core 1. Every figure that is a speed is reported as a ratio
//! to a reference measured in the same run, because these machines are noisy:
//!
//! | subject | reference |
//! |---|---|
//! | `POST /token` client credentials (auth server, HTTP) | a bare one-thread axum handler reading the same form and answering a small JSON body, built into this binary |
//! | gRPC `TokenService/Token` client credentials | `grpc.health.v1.Health/Check` on the same server |
//! | resource server `GetProfile` with a valid token | the same RPC (the same request, token included), same process set-up, with the auth layer switched off (`service-kit` feature `bench`) |
//! | the same RPC to the unprotected server, token included | the same without a token: what carrying a token costs |
//! | `POST /token` p99, one request every 3 ms, while password sign-ins run | the same p99 with nothing else running |
//!
//! and, as plain figures: authorization-code exchanges and refresh rotations
//! per second (SQLite, and PostgreSQL when `--postgres-url` is given),
//! password sign-ins per second, the
//! median latency of every gRPC method of every service called one at a time,
//! each service's resident memory idle and at its peak, and the time from
//! starting a process to health `SERVING`.
//!
//! Every answer is counted by status: a refused or failed call is never a
//! success, and a run where any call fails says so. `--smoke` runs everything
//! once, briefly (CI: it checks the benchmark runs, never how fast).
//!
//! A measurement, not a test: it asserts nothing about speed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt as _, Full};
use tollgate_client_app::owner::ScriptedOwner;
use tollgate_e2e::probe::{Latencies, token_probe};
use tollgate_e2e::{DemoSecrets, bootstrap_toml, which};
use tollgate_proto::auth::v1 as auth;
use tollgate_proto::auth::v1::revocation_list_service_client::RevocationListServiceClient;
use tollgate_proto::auth::v1::token_service_client::TokenServiceClient;
use tollgate_proto::notes::v1 as notes;
use tollgate_proto::notes::v1::note_store_client::NoteStoreClient;
use tollgate_proto::resource::v1 as resource;
use tollgate_proto::resource::v1::notes_service_client::NotesServiceClient;
use tollgate_proto::resource::v1::profile_service_client::ProfileServiceClient;
use tollgate_proto::resource::v1::report_service_client::ReportServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

#[derive(Parser)]
#[command(name = "bench", about = "The platform's benchmark: ratios measured in one run")]
struct Args {
    #[command(subcommand)]
    role: Option<Role>,
    /// Where the release binaries are (auth-server, resource-server, notes-store).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Seconds each load phase lasts.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// How many times each comparison is measured (median, min, max).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Requests in flight at once under load.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Calls per method when calling one at a time.
    #[arg(long, default_value_t = 300)]
    calls: usize,
    /// Everything once, briefly: checks the benchmark runs (CI).
    #[arg(long)]
    smoke: bool,
    /// Also measure code exchange and refresh rotation on this PostgreSQL
    /// (a database the bench may create and drop schemas in).
    #[arg(long, env = "TOLLGATE_BENCH_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// The cores the servers may use (`taskset -c`): `0` (the default) gives
    /// each server one core and the load the other; `0,1` lets the servers
    /// use both, to compare runtime shapes (docs/performance.md). tokio sizes
    /// its worker pool to the cores a process may use; `TOKIO_WORKER_THREADS`
    /// set for the bench reaches the servers too.
    #[arg(long, default_value = "0")]
    server_cpus: String,
}

#[derive(Subcommand)]
enum Role {
    /// Internal: the bare reference handler, on one thread.
    #[command(hide = true)]
    Bare { port: u16 },
    /// Internal: the resource server built in this process, protected or with
    /// the auth layer switched off.
    #[command(hide = true)]
    Resource {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        issuer: String,
        #[arg(long)]
        auth_grpc_url: String,
        #[arg(long)]
        data_dir: PathBuf,
        /// Admit every call as alice without checking its token.
        #[arg(long)]
        open: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.role {
        Some(Role::Bare { port }) => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(bare(port))
        }
        Some(Role::Resource { port, ref issuer, ref auth_grpc_url, ref data_dir, open }) => {
            // The same runtime as the service's own `#[tokio::main]`.
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(resource_in_process(port, issuer, auth_grpc_url, data_dir, open))
        }
        // The load runs on one core: one thread, no hand-offs.
        None => {
            tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run(args))
        }
    }
}

// ---------------------------------------------------------------------------
// The references and the in-process resource server.

/// A bare axum handler: reads the same form `/token` reads and answers a JSON
/// body of the same shape. The most a one-core HTTP server can do here.
async fn bare(port: u16) -> anyhow::Result<()> {
    async fn token(
        axum::Form(form): axum::Form<Vec<(String, String)>>,
    ) -> axum::response::Response {
        let body = serde_json::json!({
            "access_token": "x".repeat(400),
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": form.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.as_str()).unwrap_or(""),
        });
        axum::response::IntoResponse::into_response(axum::Json(body))
    }
    let app = axum::Router::new().route("/token", axum::routing::post(token));
    use axum::serve::ListenerExt as _;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

/// The resource server as `resource-server` builds it, on SQLite; with `open`,
/// every protected call is admitted as alice with nothing checked.
async fn resource_in_process(
    port: u16,
    issuer: &str,
    auth_grpc_url: &str,
    data_dir: &Path,
    open: bool,
) -> anyhow::Result<()> {
    use tollgate_resource_server::{Application, Config};
    let _telemetry = tollgate_service_kit::telemetry::init(
        "resource-server",
        tollgate_service_kit::telemetry::LogFormat::Text,
        &Default::default(),
        "info,sqlx=warn",
    );
    let mut config = Config::local(data_dir, issuer);
    config.service.grpc_addr = SocketAddr::from(([127, 0, 0, 1], port));
    config.tokens.auth_grpc_url = auth_grpc_url.to_owned();
    config.tokens.client_id = Some("tollgate-resource".into());
    config.tokens.client_secret =
        Some(tollgate_token::Secret::new(std::env::var("BENCH_RESOURCE_SECRET")?));
    let app = Application::build(config, Arc::new(tollgate_token::SystemClock)).await?;
    let app = if open {
        app.without_token_checks(tollgate_service_kit::auth::AuthContext {
            subject: "alice".into(),
            client_id: "tollgate-cli".into(),
            scopes: vec!["profile:read".into()],
            token_id: "bench".into(),
            expires_at: i64::MAX,
            actor: None,
            transaction: None,
        })
    } else {
        app
    };
    app.run_until_stopped(tollgate_service_kit::shutdown::signal()).await
}

// ---------------------------------------------------------------------------
// Processes.

/// The cores servers are pinned to (`--server-cpus`; this process runs on
/// core 1 when the machine has two: `cargo xtask bench` starts it so).
static SERVER_CPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn server_cpus() -> &'static str {
    SERVER_CPUS.get().map_or("0", String::as_str)
}

fn pinned(program: &Path) -> tokio::process::Command {
    let mut command = if which("taskset").is_some() && online_cores() >= 2 {
        let mut command = tokio::process::Command::new("taskset");
        command.arg("-c").arg(server_cpus()).arg(program);
        command
    } else {
        tokio::process::Command::new(program)
    };
    command.stdout(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    // As the image runs them (Dockerfile): freed argon2id blocks go back to
    // the system instead of staying in glibc's heap.
    command.env("MALLOC_MMAP_THRESHOLD_", "131072");
    command
}

fn online_cores() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .map(|s| {
            s.trim()
                .split(',')
                .map(|range| match range.split_once('-') {
                    Some((a, b)) => b.parse::<usize>().unwrap_or(0) + 1 - a.parse().unwrap_or(0),
                    None => 1,
                })
                .sum()
        })
        .unwrap_or(1)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A service process and how long it took to be SERVING.
struct Service {
    name: &'static str,
    child: tokio::process::Child,
    pid: u32,
    started_in: Duration,
}

impl Service {
    async fn start(
        name: &'static str,
        mut command: tokio::process::Command,
        grpc_url: &str,
    ) -> anyhow::Result<Self> {
        let started = Instant::now();
        let child = command.spawn().with_context(|| format!("starting {name}"))?;
        let pid = child.id().context("pid")?;
        wait_serving(grpc_url).await.with_context(|| format!("{name} never served"))?;
        Ok(Self { name, child, pid, started_in: started.elapsed() })
    }

    /// Resident memory now and at its peak, MiB.
    fn rss(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Polls the health check until SERVING (every millisecond: this is what
/// "time to SERVING" is measured with).
async fn wait_serving(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_millis(200))
            .connect()
            .await
        {
            let mut health = HealthClient::new(channel);
            loop {
                match health.check(HealthCheckRequest { service: String::new() }).await {
                    Ok(reply) if reply.get_ref().status == ServingStatus::Serving as i32 => {
                        return Ok(());
                    }
                    Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    Err(_) => break,
                }
                anyhow::ensure!(Instant::now() < deadline, "not SERVING within 60 s");
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    anyhow::bail!("not SERVING within 60 s")
}

// ---------------------------------------------------------------------------
// Load.

/// How the calls of one load phase were answered, and how long it took.
#[derive(Debug, Default, Clone)]
struct Tally {
    by_status: BTreeMap<String, u64>,
    ok: u64,
    elapsed: Duration,
}

impl Tally {
    fn count(&mut self, status: String, ok: bool) {
        *self.by_status.entry(status).or_default() += 1;
        self.ok += u64::from(ok);
    }

    fn merge(&mut self, other: Tally) {
        for (status, n) in other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.ok += other.ok;
    }

    fn failed(&self) -> u64 {
        self.by_status.values().sum::<u64>() - self.ok
    }

    /// Successful calls per second.
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

type HttpRequest = http::Request<Full<Bytes>>;

/// The next request of one connection, given how the last was answered
/// (`None` for the first): `None` ends that connection's work.
type NextRequest = Box<dyn FnMut(Option<(u16, &[u8])>) -> Option<HttpRequest> + Send>;

/// HTTP/1.1 load: `lanes` keep-alive connections to `addr`, each sending its
/// next request as soon as the last is answered, for `phase` or until every
/// lane is done. A lean client (hyper's connection API, no pool) so that it,
/// not the server, is rarely the limit.
async fn http_load(addr: SocketAddr, lanes: Vec<NextRequest>, phase: Duration) -> Tally {
    let started = Instant::now();
    let until = started + phase;
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|mut next| {
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    tally.count("connect failed".into(), false);
                    return tally;
                };
                let _ = stream.set_nodelay(true);
                let Ok((mut sender, connection)) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                else {
                    tally.count("handshake failed".into(), false);
                    return tally;
                };
                tokio::spawn(connection);
                let mut last: Option<(u16, Bytes)> = None;
                while Instant::now() < until {
                    let Some(request) = next(last.as_ref().map(|(s, b)| (*s, &b[..]))) else {
                        break;
                    };
                    let answer = match sender.send_request(request).await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            match response.into_body().collect().await {
                                Ok(body) => Some((status, body.to_bytes())),
                                Err(_) => None,
                            }
                        }
                        Err(_) => None,
                    };
                    match &answer {
                        Some((status, _)) => tally.count(status.to_string(), *status == 200),
                        None => {
                            tally.count("transport error".into(), false);
                            break;
                        }
                    }
                    last = answer;
                }
                tally
            })
        })
        .collect();
    gather(tasks, started).await
}

/// The lanes' tallies added up, timed from `started`. A lane that panicked
/// counts as a failure: its calls are not silently left out.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>, started: Instant) -> Tally {
    let mut total = Tally::default();
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(_) => total.count("lane panicked".into(), false),
        }
    }
    total.elapsed = started.elapsed();
    total
}

/// gRPC load: `concurrency` calls in flight at once over a few connections,
/// for `phase`. `call` makes one call on a channel and says how it ended.
async fn grpc_load<F, Fut>(
    channels: &[Channel],
    concurrency: usize,
    phase: Duration,
    call: F,
) -> Tally
where
    F: Fn(Channel) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let started = Instant::now();
    let until = started + phase;
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            let (channel, call) = (channels[i % channels.len()].clone(), call.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while Instant::now() < until {
                    match call(channel.clone()).await {
                        Ok(()) => tally.count("OK".into(), true),
                        Err(status) => tally.count(format!("{:?}", status.code()), false),
                    }
                }
                tally
            })
        })
        .collect();
    gather(tasks, started).await
}

/// `n` connections to `url`.
async fn channels(url: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::new();
    for _ in 0..n {
        channels.push(tonic::transport::Endpoint::from_shared(url.to_owned())?.connect().await?);
    }
    Ok(channels)
}

fn form_post(addr: SocketAddr, path: &str, basic: Option<(&str, &str)>, form: &str) -> HttpRequest {
    use base64::Engine as _;
    let mut request = http::Request::post(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        // RFC 6749 §2.3.1: both form-urlencoded, then Basic.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            encode(id),
            encode(secret)
        ));
        request = request.header(http::header::AUTHORIZATION, format!("Basic {credentials}"));
    }
    request.body(Full::new(Bytes::from(form.to_owned()))).unwrap_or_default()
}

/// `message` with `authorization: Bearer <token>`; with an empty `token`, no
/// `authorization` at all.
fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if token.is_empty() {
        return request;
    }
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

// ---------------------------------------------------------------------------
// Figures.

/// A figure measured in several runs.
#[derive(Default)]
struct Figures(BTreeMap<String, Vec<f64>>);

impl Figures {
    fn add(&mut self, name: &str, value: f64) {
        self.0.entry(name.to_owned()).or_default().push(value);
    }

    fn line(name: &str, values: &[f64]) -> String {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let digits = if median.abs() < 10.0 { 3 } else { 0 };
        format!(
            "| {name} | {median:.digits$} | {:.digits$} | {:.digits$} | {} |",
            sorted[0],
            sorted[sorted.len() - 1],
            sorted.len()
        )
    }

    fn print(&self) {
        println!("\n| figure | median | min | max | runs |\n|---|---|---|---|---|");
        for (name, values) in &self.0 {
            println!("{}", Self::line(name, values));
        }
    }
}

/// Says how a phase went, and refuses to report a rate over failed calls.
fn report(what: &str, tally: &Tally) -> anyhow::Result<f64> {
    println!(
        "  {what}: {:.0}/s ({} ok in {:.2} s; answers {:?})",
        tally.rate(),
        tally.ok,
        tally.elapsed.as_secs_f64(),
        tally.by_status
    );
    anyhow::ensure!(tally.ok > 0, "{what}: no call succeeded: {:?}", tally.by_status);
    anyhow::ensure!(
        tally.failed() == 0,
        "{what}: {} calls failed: {:?}",
        tally.failed(),
        tally.by_status
    );
    Ok(tally.rate())
}

/// Median, min and max of one-at-a-time latencies, µs.
fn latency_line(name: &str, mut micros: Vec<f64>) -> String {
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
    format!("| {name} | {:.0} | {:.0} | {:.0} | {} |", at(0.5), at(0.0), at(0.99), micros.len())
}

/// Calls `call` `n` times one after another (after 10 unmeasured), and gives
/// each call's latency, µs; any failure is an error.
async fn one_at_a_time<F, Fut>(name: &str, n: usize, mut call: F) -> anyhow::Result<Vec<f64>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let mut micros = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let started = Instant::now();
        call(i).await.map_err(|status| anyhow::anyhow!("{name}: {status}"))?;
        if i >= 10 {
            micros.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(micros)
}

// ---------------------------------------------------------------------------
// The run.

struct Stack {
    dir: tempfile::TempDir,
    secrets: DemoSecrets,
    http: SocketAddr,
    auth_grpc: String,
    auth: Service,
    notes: Service,
    resource: Service,
    resource_url: String,
    notes_url: String,
}

fn auth_command(
    bin_dir: &Path,
    dir: &Path,
    http: SocketAddr,
    grpc: &str,
    database: Option<&str>,
) -> tokio::process::Command {
    let mut command = pinned(&bin_dir.join("auth-server"));
    command
        .env("AUTH_HTTP_ADDR", http.to_string())
        .env("AUTH_GRPC_ADDR", grpc.trim_start_matches("http://"))
        .env("AUTH_DATA_DIR", dir.join("auth"))
        .env("AUTH_BOOTSTRAP", dir.join("bootstrap.toml"))
        // One client asking as fast as it can is what is measured here: the
        // per-client and per-address throttles are lifted out of reach.
        .env("AUTH_RATE_CLIENT", "1000000000/1s")
        .env("AUTH_RATE_REVOKE", "1000000000/1s")
        .env("AUTH_RATE_PAGES_IP", "1000000000/1s")
        .env("AUTH_RATE_SIGN_IN_IP", "1000000000/1s")
        .env("AUTH_RATE_SIGN_IN_ACCOUNT", "1000000000/1s")
        // (It must refill more slowly than the per-account one.)
        .env("AUTH_RATE_SIGN_IN_ACCOUNT_IP", "1000000000/2s")
        .env("AUTH_HTTP_REQUESTS_PER_ADDRESS", "1000000000")
        .env("RUST_LOG", "info,sqlx=warn");
    if let Some(url) = database {
        command.env("AUTH_DATABASE_URL", url);
    }
    command
}

fn protected_command(
    bin: &Path,
    dir: &Path,
    port: u16,
    issuer: &str,
    auth_grpc: &str,
    client: (&str, &str),
) -> tokio::process::Command {
    let mut command = pinned(bin);
    command
        .env("GRPC_ADDR", format!("127.0.0.1:{port}"))
        .env("DATA_DIR", dir)
        .env("OAUTH_ISSUER", issuer)
        .env("OAUTH_AUTH_GRPC_URL", auth_grpc)
        .env("OAUTH_CLIENT_ID", client.0)
        .env("OAUTH_CLIENT_SECRET", client.1)
        .env("RUST_LOG", "info,sqlx=warn");
    command
}

impl Stack {
    async fn start(bin_dir: &Path, database: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let secrets = DemoSecrets::generate();
        std::fs::write(dir.path().join("bootstrap.toml"), bootstrap_toml(&secrets))?;
        let http = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let auth_grpc = format!("http://127.0.0.1:{}", free_port()?);
        let issuer = format!("http://{http}");
        let auth = Service::start(
            "auth-server",
            auth_command(bin_dir, dir.path(), http, &auth_grpc, database),
            &auth_grpc,
        )
        .await?;
        let (notes_port, resource_port) = (free_port()?, free_port()?);
        let notes_url = format!("http://127.0.0.1:{notes_port}");
        let notes = Service::start(
            "notes-store",
            protected_command(
                &bin_dir.join("notes-store"),
                &dir.path().join("notes"),
                notes_port,
                &issuer,
                &auth_grpc,
                ("tollgate-notes-store", secrets.notes_store.expose()),
            ),
            &notes_url,
        )
        .await?;
        let resource_url = format!("http://127.0.0.1:{resource_port}");
        let mut command = protected_command(
            &bin_dir.join("resource-server"),
            &dir.path().join("resource"),
            resource_port,
            &issuer,
            &auth_grpc,
            ("tollgate-resource", secrets.resource_server.expose()),
        );
        command.env("NOTES_STORE_URL", &notes_url);
        let resource = Service::start("resource-server", command, &resource_url).await?;
        Ok(Self { dir, secrets, http, auth_grpc, auth, notes, resource, resource_url, notes_url })
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.http)
    }

    async fn stop(self) {
        for service in [self.auth, self.notes, self.resource] {
            service.stop().await;
        }
    }
}

/// alice, signed in once at the authorization endpoint. She approved the
/// CLI (a public client: its consent is asked every time) once, for the
/// access token the one-at-a-time calls use, and the web client (confidential:
/// consent remembered), whose authorization requests are then answered with a
/// code straight away: the codes the exchange rate is measured with.
struct Alice {
    owner: ScriptedOwner,
    web_authorize: url::Url,
    web_secret: String,
}

/// One PKCE verifier and its S256 challenge (RFC 7636 §4.2), reused by every
/// authorization the bench makes.
const VERIFIER: &str = "tollgate-bench-pkce-verifier-0123456789-abcdefghij";
const CHALLENGE: &str = "R87H7zfaKlDa9WHPwDoUeGIwfppEB5vpVj3AJPgG0u8";
/// The demo clients' registered loopback redirect.
const REDIRECT: &str = "http://127.0.0.1/callback";

fn authorize_url(issuer: &str, client_id: &str, scope: &str) -> anyhow::Result<url::Url> {
    let mut url = url::Url::parse(&format!("{issuer}/authorize"))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "bench");
    Ok(url)
}

fn code_in(page: &tollgate_client_app::owner::Page) -> anyhow::Result<String> {
    let location = page.location().with_context(|| format!("no redirect: {}", page.status))?;
    location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .with_context(|| format!("the redirect has no code: {location}"))
}

impl Alice {
    /// Signs in, approves the CLI and the web client; returns the CLI's access
    /// token (every scope of the resource server).
    async fn sign_in(
        issuer: &str,
        http: SocketAddr,
        web_secret: &str,
    ) -> anyhow::Result<(Self, String)> {
        let cli = authorize_url(
            issuer,
            "tollgate-cli",
            "profile:read profile:write notes:read notes:write",
        )?;
        let mut owner = ScriptedOwner::new()?;
        let password = tollgate_e2e::password_of("alice")?;
        let redirect = tollgate_e2e::approve(&mut owner, &cli, "alice", password).await?;
        let (access, _) = exchange(http, &code_form(&code_in(&redirect)?, None)).await?;
        let web_authorize = authorize_url(issuer, "tollgate-web", "profile:read notes:read")?;
        let consent = owner.get(&web_authorize).await?;
        anyhow::ensure!(consent.status == 200, "web consent page: {}", consent.status);
        let approved =
            owner.submit(&consent, "/authorize/consent", &[("decision", "approve")]).await?;
        code_in(&approved)?;
        Ok((Self { owner, web_authorize, web_secret: web_secret.to_owned() }, access))
    }

    /// A fresh authorization code for the web client (one GET).
    async fn code(&mut self) -> anyhow::Result<String> {
        code_in(&self.owner.get(&self.web_authorize).await?)
    }
}

/// Sign-ins that run at once: one checking a password and one waiting for
/// the hashing pool (on one core `AUTH_HASH_CONCURRENCY` and
/// `AUTH_HASH_QUEUE` are 1 each; a third would be answered 503, a failure).
const SIGN_IN_LANES: usize = 2;
/// How often the token endpoint is probed while sign-ins run.
const PROBE_EVERY: Duration = Duration::from_millis(3);

/// Password sign-ins per second, each a whole authorization by a new browser
/// (login page, the password checked with argon2id, consent page, code), and
/// the token endpoint's p99 beside them: `tollgate-reporter`'s
/// client-credentials request every [`PROBE_EVERY`], first with nothing else
/// running, then during the sign-ins. Returns the rate and both p99s.
async fn sign_ins(
    issuer: &str,
    http: SocketAddr,
    reporter_secret: &str,
    phase: Duration,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let quiet = token_p99(http, reporter_secret, phase).await?;
    let cli = authorize_url(issuer, "tollgate-cli", "profile:read")?;
    let password = tollgate_e2e::password_of("alice")?;
    let started = Instant::now();
    let until = started + phase;
    // The sign-ins' own client work (pages, forms, cookies) runs on a thread
    // of its own at SCHED_IDLE: on the load's one core, a probe answer that
    // arrives while a lane parses a page is read at once, so the probe
    // measures the server, not the lanes sharing its thread.
    let (tallied, signed_in) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("sign-in-lanes".into()).spawn(move || {
        tollgate_auth_server::domain::hashing::HashPriority::Idle.apply_to_this_thread();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let tally = runtime.map(|runtime| {
            runtime.block_on(async move {
                let lanes: Vec<_> = (0..SIGN_IN_LANES)
                    .map(|_| {
                        let cli = cli.clone();
                        tokio::spawn(async move {
                            let mut tally = Tally::default();
                            while Instant::now() < until {
                                let signed_in = async {
                                    let mut owner = ScriptedOwner::new()?;
                                    let owner =
                                        tollgate_e2e::approve(&mut owner, &cli, "alice", password);
                                    code_in(&owner.await?)
                                };
                                match signed_in.await {
                                    Ok(_) => tally.count("signed in".into(), true),
                                    Err(err) => tally.count(format!("{err:#}"), false),
                                }
                            }
                            tally
                        })
                    })
                    .collect();
                gather(lanes, started).await
            })
        });
        let _ = tallied.send(tally);
    })?;
    let busy = token_p99(http, reporter_secret, phase).await?;
    let signed_in = signed_in.await?.map_err(|e| anyhow::anyhow!("the sign-in lanes: {e}"))?;
    let rate = report("password sign-ins", &signed_in)?;
    println!(
        "  /token p99 quiet {} µs, during sign-ins {} µs",
        quiet.as_micros(),
        busy.as_micros()
    );
    Ok((rate, quiet, busy))
}

/// The p99 latency of `POST /token` client credentials, one request every
/// [`PROBE_EVERY`] for `phase` (the flood measurement's probe). Any answer
/// but 200 is an error.
async fn token_p99(http: SocketAddr, secret: &str, phase: Duration) -> anyhow::Result<Duration> {
    let url = format!("http://{http}/token");
    let until = Instant::now() + phase;
    let answers =
        token_probe(reqwest::Client::new(), url, secret.to_owned(), PROBE_EVERY, until).await;
    anyhow::ensure!(!answers.is_empty(), "no probe was answered");
    if let Some((_, status)) = answers.iter().find(|(_, status)| *status != 200) {
        anyhow::bail!("/token probe answered {status} (0: no answer)");
    }
    Ok(Latencies(answers.into_iter().map(|(latency, _)| latency).collect()).at(0.99))
}

/// The token request for a code; a public client (`client` `None`: the CLI)
/// names itself in the form.
fn code_form(code: &str, client: Option<(&str, &str)>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_verifier", VERIFIER);
    if client.is_none() {
        form.append_pair("client_id", "tollgate-cli");
    }
    form.finish()
}

fn refresh_form(refresh_token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", refresh_token)
        .finish()
}

fn json_field(body: &[u8], field: &str) -> Option<String> {
    serde_json::from_slice::<serde_json::Value>(body).ok()?.get(field)?.as_str().map(str::to_owned)
}

/// `/token` with a public client's code form, for its access token.
async fn exchange(http: SocketAddr, form: &str) -> anyhow::Result<(String, String)> {
    let answer = Arc::new(Mutex::new(None));
    let (form, keep) = (form.to_owned(), answer.clone());
    let lane: NextRequest = Box::new(move |last| match last {
        None => Some(form_post(http, "/token", None, &form)),
        Some((_, body)) => {
            *keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.to_vec());
            None
        }
    });
    let tally = http_load(http, vec![lane], Duration::from_secs(10)).await;
    let body = answer.lock().unwrap_or_else(|e| e.into_inner()).clone().context("no body")?;
    anyhow::ensure!(
        tally.ok == 1,
        "code exchange failed: {:?} {}",
        tally.by_status,
        String::from_utf8_lossy(&body)
    );
    Ok((
        json_field(&body, "access_token").context("no access_token")?,
        json_field(&body, "refresh_token").context("no refresh_token")?,
    ))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (seconds, runs, calls) =
        if args.smoke { (0.3, 1, 20) } else { (args.seconds, args.runs, args.calls) };
    let phase = Duration::from_secs_f64(seconds);
    let concurrency = args.concurrency;
    let _ = SERVER_CPUS.set(args.server_cpus.clone());
    println!(
        "bench: {} online cores; servers on core(s) {}, load on core 1; {runs} runs of {seconds} s, {concurrency} in flight",
        online_cores(),
        server_cpus()
    );
    let mut figures = Figures::default();

    // Start to SERVING, and the stack the rest is measured on.
    let stack = Stack::start(&args.bin_dir, None).await?;
    for service in [&stack.auth, &stack.notes, &stack.resource] {
        figures.add(
            &format!("start to SERVING, first start (ms): {}", service.name),
            service.started_in.as_secs_f64() * 1e3,
        );
    }
    let idle: Vec<(&str, f64)> =
        [&stack.auth, &stack.notes, &stack.resource].iter().map(|s| (s.name, s.rss().0)).collect();

    let issuer = stack.issuer();
    let (mut alice, access) =
        Alice::sign_in(&issuer, stack.http, stack.secrets.web.expose()).await?;
    let reporter = stack.secrets.reporter.expose().clone();
    let resource_secret = stack.secrets.resource_server.expose().clone();
    let client_credentials = "grant_type=client_credentials".to_owned();

    // The reference servers: the bare handler, and the resource server built
    // in-process twice, protected and open.
    let me = std::env::current_exe()?;
    let bare_port = free_port()?;
    let mut bare_command = pinned(&me);
    bare_command.arg("bare").arg(bare_port.to_string());
    let bare_child = bare_command.spawn()?;
    let bare_addr = SocketAddr::from(([127, 0, 0, 1], bare_port));
    while tokio::net::TcpStream::connect(bare_addr).await.is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut in_process = Vec::new();
    let mut urls = Vec::new();
    for open in [false, true] {
        let port = free_port()?;
        let mut command = pinned(&me);
        command
            .arg("resource")
            .args(["--port", &port.to_string(), "--issuer", &issuer])
            .args(["--auth-grpc-url", &stack.auth_grpc])
            .arg("--data-dir")
            .arg(stack.dir.path().join(if open { "open" } else { "protected" }))
            .env("BENCH_RESOURCE_SECRET", &resource_secret)
            .env("RUST_LOG", "info,sqlx=warn");
        if open {
            command.arg("--open");
        }
        let url = format!("http://127.0.0.1:{port}");
        let name = if open { "resource (auth off)" } else { "resource (auth on)" };
        in_process.push(Service::start(name, command, &url).await?);
        urls.push(url);
    }
    let (protected_url, open_url) = (urls[0].clone(), urls[1].clone());

    for run in 1..=runs {
        println!("run {run} of {runs}");
        // 1. POST /token client credentials ÷ the bare handler.
        let lanes = |addr: SocketAddr, basic: Option<(String, String)>| -> Vec<NextRequest> {
            (0..concurrency)
                .map(|_| {
                    let (basic, form) = (basic.clone(), client_credentials.clone());
                    Box::new(move |_: Option<(u16, &[u8])>| {
                        Some(form_post(
                            addr,
                            "/token",
                            basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                            &form,
                        ))
                    }) as NextRequest
                })
                .collect()
        };
        let bare_rate =
            report("bare handler", &http_load(bare_addr, lanes(bare_addr, None), phase).await)?;
        let token_rate = report(
            "POST /token client_credentials",
            &http_load(
                stack.http,
                lanes(stack.http, Some(("tollgate-reporter".into(), reporter.clone()))),
                phase,
            )
            .await,
        )?;
        figures.add("HTTP /token client_credentials ÷ bare handler", token_rate / bare_rate);
        figures.add("HTTP /token client_credentials (/s)", token_rate);
        figures.add("HTTP bare handler (/s)", bare_rate);

        // 2. gRPC Token ÷ Health/Check on the same server.
        let auth_channels = channels(&stack.auth_grpc, 4).await?;
        let health = report(
            "auth gRPC Health/Check",
            &grpc_load(&auth_channels, concurrency, phase, |channel| async move {
                HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .map(drop)
            })
            .await,
        )?;
        let secret = reporter.clone();
        let token = report(
            "auth gRPC TokenService/Token client_credentials",
            &grpc_load(&auth_channels, concurrency, phase, move |channel| {
                let request = client_credentials_request(&secret);
                async move { TokenServiceClient::new(channel).token(request).await.map(drop) }
            })
            .await,
        )?;
        figures.add("gRPC Token client_credentials ÷ Health/Check", token / health);

        // 3. A protected RPC ÷ the same RPC with the auth layer switched off.
        let get_profile = |url: String, token: String| async move {
            let channels = channels(&url, 4).await?;
            Ok::<_, anyhow::Error>(
                grpc_load(&channels, concurrency, phase, move |channel| {
                    let request =
                        bearer(resource::GetProfileRequest { owner: "me".into() }, &token);
                    async move {
                        ProfileServiceClient::new(channel).get_profile(request).await.map(drop)
                    }
                })
                .await,
            )
        };
        // The same request to both, token and all: what differs is only the
        // auth layer. What carrying the token costs on its own (h2 sends an
        // `authorization` value literally on every call, never from its
        // header table, and the server decodes it) is the third figure: the
        // unprotected server, called without a token.
        let open = report(
            "GetProfile, auth layer off",
            &get_profile(open_url.clone(), access.clone()).await?,
        )?;
        let protected = report(
            "GetProfile, auth layer on",
            &get_profile(protected_url.clone(), access.clone()).await?,
        )?;
        let tokenless = report(
            "GetProfile, auth layer off, no token",
            &get_profile(open_url.clone(), String::new()).await?,
        )?;
        figures.add("gRPC GetProfile protected ÷ auth layer off", protected / open);
        figures.add("gRPC GetProfile auth layer off, token sent ÷ no token", open / tokenless);

        // 4. Authorization-code exchange and refresh rotation, SQLite.
        let (codes, refreshes) = grants(&mut alice, stack.http, concurrency, phase).await?;
        figures.add("code exchanges /s (SQLite)", codes);
        figures.add("refresh rotations /s (SQLite)", refreshes);

        // 5. Password sign-ins, with the token endpoint's p99 beside them.
        let (sign_ins, quiet, busy) = sign_ins(&issuer, stack.http, &reporter, phase).await?;
        figures.add("password sign-ins /s", sign_ins);
        figures.add("/token p99 quiet (µs)", quiet.as_secs_f64() * 1e6);
        figures.add("/token p99 during sign-ins (µs)", busy.as_secs_f64() * 1e6);
        figures.add("/token p99 during sign-ins ÷ quiet", busy.as_secs_f64() / quiet.as_secs_f64());
    }

    // 6. Every gRPC method, one call at a time.
    println!("\none call at a time ({calls} calls each, after 10 unmeasured), µs:");
    let mut lines = vec![
        "| method | median | min | p99 | calls |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    lines.extend(single_calls(&stack, &access, calls).await?);
    for line in &lines {
        println!("{line}");
    }

    // 7. Memory, idle and at the peak of everything above.
    for (service, (name, idle_rss)) in [&stack.auth, &stack.notes, &stack.resource].iter().zip(idle)
    {
        figures.add(&format!("RSS idle (MiB): {name}"), idle_rss);
        figures.add(&format!("RSS peak (MiB): {}", service.name), service.rss().1);
    }
    for service in &in_process {
        figures.add(&format!("RSS peak (MiB): {}", service.name), service.rss().1);
    }

    // 8. Restart to SERVING (the database exists and is migrated).
    let Stack { dir, auth, http, auth_grpc, .. } = stack;
    auth.stop().await;
    for _ in 0..runs {
        let restarted = Service::start(
            "auth-server",
            auth_command(&args.bin_dir, dir.path(), http, &auth_grpc, None),
            &auth_grpc,
        )
        .await?;
        figures
            .add("restart to SERVING (ms): auth-server", restarted.started_in.as_secs_f64() * 1e3);
        restarted.stop().await;
    }

    // 9. The same grants on PostgreSQL.
    if let Some(url) = &args.postgres_url {
        let stack = Stack::start(&args.bin_dir, Some(url)).await?;
        let (mut alice, _) =
            Alice::sign_in(&stack.issuer(), stack.http, stack.secrets.web.expose()).await?;
        for _ in 0..runs {
            let (codes, refreshes) = grants(&mut alice, stack.http, concurrency, phase).await?;
            figures.add("code exchanges /s (PostgreSQL)", codes);
            figures.add("refresh rotations /s (PostgreSQL)", refreshes);
        }
        stack.stop().await;
    }

    for service in in_process {
        service.stop().await;
    }
    drop(bare_child);
    figures.print();
    Ok(())
}

fn client_credentials_request(secret: &str) -> auth::TokenRequest {
    auth::TokenRequest {
        client: Some(auth::ClientAuthentication {
            client_id: "tollgate-reporter".into(),
            client_secret: Some(secret.to_owned()),
            client_assertion: None,
        }),
        grant: Some(auth::token_request::Grant::ClientCredentials(auth::ClientCredentialsGrant {
            scope: None,
            resource: None,
        })),
    }
}

/// Code exchanges per second (codes made beforehand, then redeemed by
/// `lanes` connections at once) and refresh rotations per second (`lanes`
/// chains, each redeeming the refresh token the last answer gave it).
async fn grants(
    alice: &mut Alice,
    http: SocketAddr,
    lanes: usize,
    phase: Duration,
) -> anyhow::Result<(f64, f64)> {
    // Enough codes for the phase at 4,000/s, made before the clock starts.
    let wanted = ((phase.as_secs_f64() * 4_000.0) as usize).max(lanes * 4);
    let mut codes = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        codes.push(alice.code().await?);
    }
    let codes = Arc::new(Mutex::new(codes));
    let refresh_tokens = Arc::new(Mutex::new(Vec::new()));
    let code_lanes: Vec<NextRequest> = (0..lanes)
        .map(|_| {
            let (codes, refresh_tokens) = (codes.clone(), refresh_tokens.clone());
            let secret = alice.web_secret.clone();
            Box::new(move |last: Option<(u16, &[u8])>| {
                if let Some((200, body)) = last
                    && let Some(refresh) = json_field(body, "refresh_token")
                {
                    refresh_tokens.lock().unwrap_or_else(|e| e.into_inner()).push(refresh);
                }
                let code = codes.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
                let web = Some(("tollgate-web", secret.as_str()));
                Some(form_post(http, "/token", web, &code_form(&code, web)))
            }) as NextRequest
        })
        .collect();
    let exchanged = http_load(http, code_lanes, phase * 10).await;
    let code_rate = report("authorization_code exchanges", &exchanged)?;

    let starts: Vec<String> =
        std::mem::take(&mut *refresh_tokens.lock().unwrap_or_else(|e| e.into_inner()));
    anyhow::ensure!(starts.len() >= lanes, "{} refresh tokens for {lanes} chains", starts.len());
    let refresh_lanes: Vec<NextRequest> = starts
        .into_iter()
        .take(lanes)
        .map(|first| {
            let mut current = first;
            let secret = alice.web_secret.clone();
            Box::new(move |last: Option<(u16, &[u8])>| {
                if let Some((_, body)) = last {
                    current = json_field(body, "refresh_token")?;
                }
                let web = Some(("tollgate-web", secret.as_str()));
                Some(form_post(http, "/token", web, &refresh_form(&current)))
            }) as NextRequest
        })
        .collect();
    let rotated = http_load(http, refresh_lanes, phase).await;
    let refresh_rate = report("refresh_token rotations", &rotated)?;
    Ok((code_rate, refresh_rate))
}

/// Every gRPC method of every service, called one at a time.
async fn single_calls(stack: &Stack, access: &str, calls: usize) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let reporter = stack.secrets.reporter.expose().clone();
    let resource_secret = stack.secrets.resource_server.expose().clone();
    let resource_client = || auth::ClientAuthentication {
        client_id: "tollgate-resource".into(),
        client_secret: Some(resource_secret.clone()),
        client_assertion: None,
    };
    for (service, url) in [
        ("auth-server", &stack.auth_grpc),
        ("resource-server", &stack.resource_url),
        ("notes-store", &stack.notes_url),
    ] {
        let channel = channels(url, 1).await?.remove(0);
        let micros = one_at_a_time("Health/Check", calls, |_| {
            let channel = channel.clone();
            async move {
                HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .map(drop)
            }
        })
        .await?;
        lines.push(latency_line(&format!("{service} grpc.health.v1.Health/Check"), micros));
    }

    // The authorization server.
    let channel = channels(&stack.auth_grpc, 1).await?.remove(0);
    let tokens = TokenServiceClient::new(channel.clone());
    let micros = one_at_a_time("Token", calls, |_| {
        let (mut tokens, request) = (tokens.clone(), client_credentials_request(&reporter));
        async move { tokens.token(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("auth-server TokenService/Token (client_credentials)", micros));
    let micros = one_at_a_time("Introspect", calls, |_| {
        let mut tokens = tokens.clone();
        let request = auth::IntrospectRequest {
            client: Some(resource_client()),
            token: access.to_owned(),
            token_type_hint: None,
        };
        async move {
            let reply = tokens.introspect(request).await?;
            if reply.get_ref().active { Ok(()) } else { Err(tonic::Status::internal("inactive")) }
        }
    })
    .await?;
    lines.push(latency_line("auth-server TokenService/Introspect", micros));
    let micros = one_at_a_time("Revoke", calls, |i| {
        let mut tokens = tokens.clone();
        // An unknown token: revocation answers OK and changes nothing (RFC 7009 §2.2).
        let request = auth::RevokeRequest {
            client: Some(resource_client()),
            token: format!("not-a-token-{i}"),
            token_type_hint: None,
        };
        async move { tokens.revoke(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("auth-server TokenService/Revoke", micros));
    let list = RevocationListServiceClient::new(channel.clone());
    let micros = one_at_a_time("ListRevokedAccessTokens", calls, |_| {
        let mut list = list.clone();
        let request = auth::ListRevokedAccessTokensRequest {
            client: Some(resource_client()),
            page_token: String::new(),
            page_size: 0,
        };
        async move { list.list_revoked_access_tokens(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("auth-server RevocationListService/ListRevokedAccessTokens", micros));

    // The resource server, as alice.
    let channel = channels(&stack.resource_url, 1).await?.remove(0);
    let profiles = ProfileServiceClient::new(channel.clone());
    let micros = one_at_a_time("UpdateProfile", calls, |i| {
        let mut profiles = profiles.clone();
        let request = bearer(
            resource::UpdateProfileRequest {
                owner: "me".into(),
                display_name: format!("Alice {i}"),
                email: "alice@example.com".into(),
            },
            access,
        );
        async move { profiles.update_profile(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("resource-server ProfileService/UpdateProfile", micros));
    let micros = one_at_a_time("GetProfile", calls, |_| {
        let mut profiles = profiles.clone();
        let request = bearer(resource::GetProfileRequest { owner: "me".into() }, access);
        async move { profiles.get_profile(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("resource-server ProfileService/GetProfile", micros));
    let notes_api = NotesServiceClient::new(channel.clone());
    // Listed while the list is empty: the call's cost, not the list's size.
    let micros = one_at_a_time("ListNotes", calls, |_| {
        let mut notes_api = notes_api.clone();
        let request = bearer(resource::ListNotesRequest { owner: "me".into() }, access);
        async move { notes_api.list_notes(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("resource-server NotesService/ListNotes", micros));
    let created = Arc::new(Mutex::new(Vec::new()));
    let micros = one_at_a_time("CreateNote", calls, |i| {
        let (mut notes_api, created) = (notes_api.clone(), created.clone());
        let request = bearer(
            resource::CreateNoteRequest {
                owner: "me".into(),
                title: format!("note {i}"),
                body: "benchmark".into(),
            },
            access,
        );
        async move {
            let note = notes_api.create_note(request).await?.into_inner();
            created.lock().unwrap_or_else(|e| e.into_inner()).push(note.id);
            Ok(())
        }
    })
    .await?;
    lines.push(latency_line("resource-server NotesService/CreateNote", micros));
    let micros = one_at_a_time("DeleteNote", calls, |_| {
        let mut notes_api = notes_api.clone();
        let id = created.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let request = bearer(resource::DeleteNoteRequest { owner: "me".into(), id }, access);
        async move { notes_api.delete_note(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("resource-server NotesService/DeleteNote", micros));
    let (reports_token, _) = grpc_token(&tokens, client_credentials_request(&reporter)).await?;
    let report_api = ReportServiceClient::new(channel.clone());
    let micros = one_at_a_time("GetUsageReport", calls, |_| {
        let mut report_api = report_api.clone();
        let request = bearer(resource::GetUsageReportRequest {}, &reports_token);
        async move { report_api.get_usage_report(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("resource-server ReportService/GetUsageReport", micros));

    // The notes store, with the tokens the resource server would use: alice's
    // exchanged (RFC 8693), and its own for counts.
    let exchange = auth::TokenRequest {
        client: Some(resource_client()),
        grant: Some(auth::token_request::Grant::TokenExchange(auth::TokenExchangeGrant {
            subject_token: access.to_owned(),
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            audience: Some("tollgate-notes-store".into()),
            resource: None,
            scope: Some("notes:read notes:write".into()),
            requested_token_type: None,
            request_context: None,
            request_details: None,
        })),
    };
    let (as_alice, _) = grpc_token(&tokens, exchange).await?;
    let count = auth::TokenRequest {
        client: Some(resource_client()),
        grant: Some(auth::token_request::Grant::ClientCredentials(auth::ClientCredentialsGrant {
            scope: Some("notes:count".into()),
            resource: None,
        })),
    };
    let (as_service, _) = grpc_token(&tokens, count).await?;
    let store = NoteStoreClient::new(channels(&stack.notes_url, 1).await?.remove(0));
    let micros = one_at_a_time("ListNotes", calls, |_| {
        let mut store = store.clone();
        let request = bearer(notes::ListNotesRequest {}, &as_alice);
        async move { store.list_notes(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("notes-store NoteStore/ListNotes", micros));
    let micros = one_at_a_time("CreateNote", calls, |i| {
        let (mut store, created) = (store.clone(), created.clone());
        let request = bearer(
            notes::CreateNoteRequest { title: format!("note {i}"), body: "benchmark".into() },
            &as_alice,
        );
        async move {
            let note = store.create_note(request).await?.into_inner();
            created.lock().unwrap_or_else(|e| e.into_inner()).push(note.id);
            Ok(())
        }
    })
    .await?;
    lines.push(latency_line("notes-store NoteStore/CreateNote", micros));
    let micros = one_at_a_time("CountNotes", calls, |_| {
        let mut store = store.clone();
        let request = bearer(notes::CountNotesRequest {}, &as_service);
        async move { store.count_notes(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("notes-store NoteStore/CountNotes", micros));
    let micros = one_at_a_time("DeleteNote", calls, |_| {
        let mut store = store.clone();
        let id = created.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        let request = bearer(notes::DeleteNoteRequest { id }, &as_alice);
        async move { store.delete_note(request).await.map(drop) }
    })
    .await?;
    lines.push(latency_line("notes-store NoteStore/DeleteNote", micros));
    Ok(lines)
}

async fn grpc_token(
    tokens: &TokenServiceClient<Channel>,
    request: auth::TokenRequest,
) -> anyhow::Result<(String, i64)> {
    let reply = tokens.clone().token(request).await?.into_inner();
    Ok((reply.access_token, reply.expires_in))
}

//! `cargo xtask flood`: a bounded sign-in flood against a real authorization
//! server process, for the figures in docs/security.md ("Under a flood").
//!
//! It starts the release `auth-server` with the demo data (pinned to one core
//! with `taskset` when there is one), measures `/token` client-credentials
//! latency alone, then again while `--concurrency` tasks post wrong passwords to
//! `/authorize/login` for `--seconds`, sampling the server's resident memory. It
//! prints the medians, p99s and maxima, their ratio (a ratio, measured in the
//! same run, because these machines are noisy), the peak RSS, and how every
//! flood post was answered. `--unthrottled` lifts the sign-in and page
//! throttles out of reach, so only the password-hashing bound holds.
//!
//! A measurement, not a test: it asserts nothing and exits 0 once it reports.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tollgate_client_app::owner::{Page, ScriptedOwner};
use tollgate_e2e::{DemoSecrets, bootstrap_toml};

#[derive(Parser)]
#[command(name = "flood", about = "Measure /token latency and memory under a sign-in flood")]
struct Args {
    /// The auth-server binary to run (a release build).
    #[arg(long)]
    server: PathBuf,
    /// Sign-in posts in flight at once.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// How long the flood lasts, seconds (the baseline takes as long).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// One `/token` request every this many milliseconds, during both phases.
    #[arg(long, default_value_t = 5)]
    probe_every_ms: u64,
    /// Lift the sign-in and page throttles: only the hashing bound holds.
    #[arg(long)]
    unthrottled: bool,
    /// The core the server is pinned to (`taskset -c`); empty: not pinned.
    #[arg(long, default_value = "0")]
    server_core: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The server's resident memory now, in MiB (Linux).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn at(&self, quantile: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
        sorted.get(index).copied().unwrap_or_default()
    }

    fn report(&self, what: &str) {
        println!(
            "{what}: {} requests, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.0.len(),
            self.at(0.5).as_secs_f64() * 1e3,
            self.at(0.99).as_secs_f64() * 1e3,
            self.at(1.0).as_secs_f64() * 1e3,
        );
    }
}

/// [`probe`] on a thread of its own with its own runtime and client, so the
/// flood's thousand tasks do not delay the probe's own wake-ups: what it
/// measures is the server.
fn probe_apart(
    url: String,
    secret: String,
    every: Duration,
    until: Instant,
) -> std::thread::JoinHandle<(Latencies, BTreeMap<u16, u64>)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("probe runtime: {e}"));
        runtime.block_on(async move {
            // From another loopback address: the probe is another caller than
            // the flood, as a real client would be.
            let http = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
                .build()
                .unwrap_or_else(|e| panic!("probe client: {e}"));
            probe(http, url, secret, every, until).await
        })
    })
}

/// `/token` client credentials, one request every `every`, until `until`.
async fn probe(
    http: reqwest::Client,
    url: String,
    secret: String,
    every: Duration,
    until: Instant,
) -> (Latencies, BTreeMap<u16, u64>) {
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::new();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < until {
        ticker.tick().await;
        let started = Instant::now();
        let reply = http
            .post(&url)
            .basic_auth("tollgate-reporter", Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        let status = match reply {
            Ok(reply) => {
                let status = reply.status().as_u16();
                let _ = reply.bytes().await;
                status
            }
            Err(_) => 0,
        };
        latencies.push(started.elapsed());
        *statuses.entry(status).or_default() += 1;
    }
    (Latencies(latencies), statuses)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let secrets = DemoSecrets::generate();
    let bootstrap = dir.path().join("bootstrap.toml");
    std::fs::write(&bootstrap, bootstrap_toml(&secrets))?;
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let origin = format!("http://127.0.0.1:{http_port}");

    let mut command = if args.server_core.is_empty() || which("taskset").is_none() {
        tokio::process::Command::new(&args.server)
    } else {
        let mut pinned = tokio::process::Command::new("taskset");
        pinned.arg("-c").arg(&args.server_core).arg(&args.server);
        pinned
    };
    command
        .env("AUTH_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("AUTH_GRPC_ADDR", format!("127.0.0.1:{grpc_port}"))
        .env("AUTH_DATA_DIR", dir.path().join("data"))
        .env("AUTH_BOOTSTRAP", &bootstrap)
        // The probe is one client asking steadily: not what is measured here.
        .env("AUTH_RATE_CLIENT", "1000000/1s")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if args.unthrottled {
        for (name, rate) in [
            ("AUTH_RATE_SIGN_IN_IP", "1000000000/1s"),
            ("AUTH_RATE_SIGN_IN_ACCOUNT", "1000000000/1s"),
            ("AUTH_RATE_SIGN_IN_ACCOUNT_IP", "100000000/1s"),
            ("AUTH_RATE_PAGES_IP", "1000000000/1s"),
        ] {
            command.env(name, rate);
        }
    }
    let server = command.spawn().context("starting the auth server")?;
    let pid = server.id().context("server pid")?;

    let http = reqwest::Client::builder().pool_max_idle_per_host(args.concurrency + 8).build()?;
    let started = Instant::now();
    while http.get(format!("{origin}/jwks.json")).send().await.is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let phase = Duration::from_secs(args.seconds);
    let every = Duration::from_millis(args.probe_every_ms);
    let token_url = format!("{origin}/token");
    let secret = secrets.reporter.expose().clone();
    println!(
        "auth-server pid {pid} on core {:?}; {} sign-in posts in flight for {} s{}",
        args.server_core,
        args.concurrency,
        args.seconds,
        if args.unthrottled { ", throttles lifted" } else { "" }
    );

    // Warm up, then the baseline: /token alone.
    let _ = probe(
        http.clone(),
        token_url.clone(),
        secret.clone(),
        every,
        Instant::now() + Duration::from_secs(1),
    )
    .await;
    let idle_rss = rss_mib(pid).unwrap_or(f64::NAN);
    let (alone, alone_statuses) =
        probe(http.clone(), token_url.clone(), secret.clone(), every, Instant::now() + phase).await;

    // The flood: one signed-out session's form, posted with a wrong password
    // by every task as fast as it is answered.
    let authorize = url::Url::parse(&format!(
        "{origin}/authorize?response_type=code&client_id=tollgate-cli\
         &redirect_uri=http%3A%2F%2F127.0.0.1%3A43210%2Fcallback&scope=notes%3Aread\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=flood"
    ))?;
    let mut owner = ScriptedOwner::new()?;
    let login: Page = owner.get(&authorize).await?;
    anyhow::ensure!(login.status == 200, "sign-in page: {}", login.status);
    let cookie = login
        .headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let mut form = login.hidden_fields();
    form.push(("username".into(), "alice".into()));
    form.push(("password".into(), "not-her-password".into()));
    let form = Arc::new(form);
    let answers = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let until = Instant::now() + phase;
    let peak = Arc::new(Mutex::new(idle_rss));
    let sampler = tokio::spawn({
        let peak = peak.clone();
        async move {
            while Instant::now() < until + Duration::from_secs(1) {
                if let Some(rss) = rss_mib(pid) {
                    let mut peak = peak.lock().unwrap_or_else(|e| e.into_inner());
                    *peak = peak.max(rss);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let flood: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (http, form, cookie, answers) =
                (http.clone(), form.clone(), cookie.clone(), answers.clone());
            let url = format!("{origin}/authorize/login");
            tokio::spawn(async move {
                let mut mine = BTreeMap::<String, u64>::new();
                while Instant::now() < until {
                    let answer = match http
                        .post(&url)
                        .header(reqwest::header::COOKIE, &cookie)
                        .form(&*form)
                        .send()
                        .await
                    {
                        Ok(reply) => {
                            let status = reply.status().as_u16().to_string();
                            let _ = reply.bytes().await;
                            status
                        }
                        Err(err) if err.is_connect() => "connect error".into(),
                        Err(_) => "transport error".into(),
                    };
                    *mine.entry(answer).or_default() += 1;
                }
                let mut answers = answers.lock().unwrap_or_else(|e| e.into_inner());
                for (answer, count) in mine {
                    *answers.entry(answer).or_default() += count;
                }
            })
        })
        .collect();
    let probing = probe_apart(token_url, secret, every, until);
    for task in flood {
        let _ = task.await;
    }
    let (during, during_statuses) =
        probing.join().map_err(|_| anyhow::anyhow!("the probe panicked"))?;
    let _ = sampler.await;

    alone.report("/token alone");
    println!("  statuses {alone_statuses:?}");
    during.report("/token during the flood");
    println!("  statuses {during_statuses:?}");
    let (p99_alone, p99_during) = (alone.at(0.99), during.at(0.99));
    println!(
        "p99 ratio (during / alone): {:.2}; median ratio {:.2}",
        p99_during.as_secs_f64() / p99_alone.as_secs_f64(),
        during.at(0.5).as_secs_f64() / alone.at(0.5).as_secs_f64()
    );
    let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
    println!("server RSS: {idle_rss:.1} MiB before the flood, peak {peak:.1} MiB during it");
    let answers = answers.lock().unwrap_or_else(|e| e.into_inner());
    let total: u64 = answers.values().sum();
    println!("sign-in posts answered: {total} in all, by status {answers:?}");
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.is_file())
}

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
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tollgate_client_app::owner::{Page, ScriptedOwner};
use tollgate_e2e::probe::{Latencies, token_probe};
use tollgate_e2e::{DemoSecrets, bootstrap_toml, which};

#[derive(Parser)]
#[command(name = "flood", about = "Measure /token latency and memory under a sign-in flood")]
struct Args {
    /// The auth-server binary to run (a release build).
    #[arg(long, required_unless_present = "probe_url")]
    server: Option<PathBuf>,
    /// Internal: run only the /token probe against this URL for `--seconds`
    /// and print each latency (µs) and status, one per line (the client
    /// secret in FLOOD_PROBE_SECRET).
    #[arg(long, hide = true)]
    probe_url: Option<String>,
    /// Sign-in posts in flight at once.
    #[arg(long, default_value_t = 1000)]
    concurrency: usize,
    /// How long the flood lasts, seconds (the baseline takes as long).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// One `/token` request every this many milliseconds, during both phases.
    #[arg(long, default_value_t = 5)]
    probe_every_ms: u64,
    /// How many times to measure (baseline, then flood); the summary gives the
    /// median ratio with its minimum and maximum.
    #[arg(long, default_value_t = 5)]
    runs: usize,
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

/// [`token_probe`] in a process of its own, scheduled real-time (`chrt -f`) when it
/// can be: the flood's client saturates the load core, and a probe sharing
/// that core at normal priority would measure its own wake-up delays (up to
/// the scheduler's granularity, milliseconds), not the server. It calls from
/// another loopback address than the flood, as a real client would.
async fn probe_apart(
    url: &str,
    secret: &str,
    every: Duration,
    seconds: f64,
) -> anyhow::Result<(Latencies, BTreeMap<u16, u64>)> {
    let me = std::env::current_exe()?;
    let mut command = if which("chrt").is_some() {
        let mut command = tokio::process::Command::new("chrt");
        command.args(["-f", "20"]).arg(&me);
        command
    } else {
        tokio::process::Command::new(&me)
    };
    let output = command
        .arg("--probe-url")
        .arg(url)
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--probe-every-ms")
        .arg(every.as_millis().to_string())
        .env("FLOOD_PROBE_SECRET", secret)
        .stderr(Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "the probe failed: {}", output.status);
    let mut latencies = Vec::new();
    let mut statuses = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((micros, status)) = line.split_once(' ') else { continue };
        let status: u16 = status.parse()?;
        latencies.push(Duration::from_micros(micros.parse()?));
        *statuses.entry(status).or_default() += 1;
    }
    Ok((Latencies(latencies), statuses))
}

/// The probe process: prints `<µs> <status>` per request.
async fn probe_only(url: String, every: Duration, seconds: f64) -> anyhow::Result<()> {
    let secret = std::env::var("FLOOD_PROBE_SECRET").context("FLOOD_PROBE_SECRET")?;
    let http =
        reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build()?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut out = String::new();
    for (latency, status) in token_probe(http, url, secret, every, until).await {
        out.push_str(&format!("{} {status}\n", latency.as_micros()));
    }
    print!("{out}");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let every = Duration::from_millis(args.probe_every_ms);
    if let Some(url) = args.probe_url.clone() {
        return probe_only(url, every, args.seconds).await;
    }
    let server = args.server.clone().context("--server")?;
    let dir = tempfile::tempdir()?;
    let secrets = DemoSecrets::generate();
    let bootstrap = dir.path().join("bootstrap.toml");
    std::fs::write(&bootstrap, bootstrap_toml(&secrets))?;
    let (http_port, grpc_port) = (free_port()?, free_port()?);
    let origin = format!("http://127.0.0.1:{http_port}");

    let mut command = if args.server_core.is_empty() || which("taskset").is_none() {
        tokio::process::Command::new(&server)
    } else {
        let mut pinned = tokio::process::Command::new("taskset");
        pinned.arg("-c").arg(&args.server_core).arg(&server);
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
    let phase = Duration::from_secs_f64(args.seconds);
    let token_url = format!("{origin}/token");
    let secret = secrets.reporter.expose().clone();
    println!(
        "auth-server pid {pid} on core {:?}; {} sign-in posts in flight for {} s{}",
        args.server_core,
        args.concurrency,
        args.seconds,
        if args.unthrottled { ", throttles lifted" } else { "" }
    );

    // Warm up.
    probe_apart(&token_url, &secret, every, 1.0).await?;
    let flood = Flood::prepare(&origin, args.concurrency).await?;
    let mut ratios = Vec::new();
    let mut peaks = Vec::new();
    for run in 1..=args.runs {
        println!("run {run} of {}", args.runs);
        // The baseline: /token alone.
        let idle_rss = rss_mib(pid).unwrap_or(f64::NAN);
        let (alone, alone_statuses) = probe_apart(&token_url, &secret, every, args.seconds).await?;
        alone.report("  /token alone");
        println!("    statuses {alone_statuses:?}");
        // The same, during the flood.
        let (during, during_statuses, answers, peak) = flood
            .run(&http, phase, pid, idle_rss, probe_apart(&token_url, &secret, every, args.seconds))
            .await?;
        during.report("  /token during the flood");
        println!("    statuses {during_statuses:?}");
        let ratio = during.at(0.99).as_secs_f64() / alone.at(0.99).as_secs_f64();
        println!(
            "  p99 ratio (during / alone) {ratio:.2}; median ratio {:.2}",
            during.at(0.5).as_secs_f64() / alone.at(0.5).as_secs_f64()
        );
        println!("  server RSS {idle_rss:.1} MiB before the flood, peak {peak:.1} MiB during it");
        let total: u64 = answers.values().sum();
        println!("  sign-in posts answered: {total}, by status {answers:?}");
        ratios.push(ratio);
        peaks.push(peak);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (min, max) = (ratios[0], ratios[ratios.len() - 1]);
    let peak = peaks.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "summary over {} runs: /token p99 during the flood / alone: median {median:.2} \
         (min {min:.2}, max {max:.2}); server RSS peak {peak:.1} MiB",
        args.runs
    );
    Ok(())
}

/// One signed-out session's sign-in form, posted with a wrong password by
/// `concurrency` tasks as fast as each is answered.
struct Flood {
    login_url: String,
    cookie: String,
    form: Arc<Vec<(String, String)>>,
    concurrency: usize,
}

impl Flood {
    async fn prepare(origin: &str, concurrency: usize) -> anyhow::Result<Self> {
        let authorize = url::Url::parse(&format!(
            "{origin}/authorize?response_type=code&client_id=tollgate-cli\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A43210%2Fcallback&scope=notes%3Aread\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256&state=flood"
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
        Ok(Self {
            login_url: format!("{origin}/authorize/login"),
            cookie,
            form: Arc::new(form),
            concurrency,
        })
    }

    /// Floods for `phase` while `measure` runs; returns what it measured, how
    /// the posts were answered, and the server's peak RSS (MiB).
    async fn run<T>(
        &self,
        http: &reqwest::Client,
        phase: Duration,
        pid: u32,
        idle_rss: f64,
        measure: impl Future<Output = anyhow::Result<(Latencies, T)>>,
    ) -> anyhow::Result<(Latencies, T, BTreeMap<String, u64>, f64)> {
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
        let tasks: Vec<_> = (0..self.concurrency)
            .map(|_| {
                let (http, form, cookie, answers) =
                    (http.clone(), self.form.clone(), self.cookie.clone(), answers.clone());
                let url = self.login_url.clone();
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
                            Err(err) => transport_error(&err),
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
        let (measured, extra) = measure.await?;
        for task in tasks {
            let _ = task.await;
        }
        let _ = sampler.await;
        let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(|e| e.into_inner()));
        let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
        Ok((measured, extra, answers, peak))
    }
}

/// A transport failure, named by its innermost cause.
fn transport_error(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    format!("transport error: {cause}")
}

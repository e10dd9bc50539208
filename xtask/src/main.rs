//! `cargo xtask <task>`: the one entry point for the developer loop and CI.
//!
//! | task | what it runs |
//! |---|---|
//! | `ci` | what `.ci/run` runs: `services`, `lint`, `k8s`, `test` with the PostgreSQL variants required, the benchmark once in smoke mode (debug builds), the quickstart (plaintext, then `--tls`), every fuzz target for 20 s, `compose-e2e` |
//! | `test` | `cargo test --workspace` (the README's test command) |
//! | `lint` | `cargo fmt --check`, `cargo clippy -D warnings` |
//! | `services` | installs and starts Chromium and PostgreSQL (`scripts/ci-services.sh`) |
//! | `quickstart` | `cargo run --bin quickstart` (the README's main command) |
//! | `k8s` | renders every Kubernetes overlay and validates it: schemas and policy scan (`scripts/k8s-check.sh`) |
//! | `compose-e2e` | the compose stack, its client flow and fault tests (`scripts/compose-e2e.sh`) |
//! | `bench` | release build, then the benchmark (`tests/src/bin/bench.rs`, docs/performance.md): servers on core 0, load on core 1 |
//! | `flood` | release build, then the sign-in flood measurement (`tests/src/bin/flood.rs`): server on core 0, load on core 1 |
//! | `fuzz` | each fuzz target (`fuzz/`, docs/fuzzing.md) for a bounded time, from its committed seeds |
//!
//! Each task prints the commands it runs and stops at the first that fails,
//! with that command's exit status. Only the standard library: it builds in
//! seconds on a clean machine.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The PostgreSQL that `services` starts, for the storage suites' second backend.
const CI_POSTGRES_URL: &str = "postgres://tollgate:tollgate@127.0.0.1:5432/postgres";

const USAGE: &str =
    "usage: cargo xtask <ci|test|lint|services|quickstart|k8s|compose-e2e|bench|flood|fuzz> [args…]
  ci           everything CI runs (.ci/run)
  test         cargo test --workspace [args…]
  lint         cargo fmt --check and cargo clippy -D warnings
  services     install and start Chromium and PostgreSQL (Debian, root)
  quickstart   cargo run --bin quickstart [args…]
  k8s          render and validate the Kubernetes overlays (schemas, policy)
  compose-e2e  the compose stack with replicas, its flow and fault tests [args…]
  bench        the benchmark: ratios measured in one run (release) [--smoke] [args…]
  flood        measure /token and memory under a sign-in flood (release) [args…]
  fuzz         run fuzz targets [--seconds N (60)] [target…] (default: all)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let result = match task.as_str() {
        "ci" => ci(),
        "test" => test(&rest, &[]),
        "lint" => lint(),
        "services" => services(),
        "quickstart" => quickstart(&rest),
        "k8s" => run("bash", &["scripts/k8s-check.sh"], &[]),
        "compose-e2e" => compose_e2e(&rest),
        "bench" => bench(&rest),
        "flood" => flood(&rest),
        "fuzz" => fuzz(&rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("xtask {task}: {failure}");
            ExitCode::FAILURE
        }
    }
}

type Result = std::result::Result<(), String>;

/// The workspace root (this crate's parent), whatever the caller's directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs a program to completion in the workspace root, echoing it first.
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result {
    println!("--- {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|e| format!("could not start {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result {
    run(&std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()), args, env)
}

fn lint() -> Result {
    cargo(&["fmt", "--all", "--check"], &[])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"], &[])
}

fn test(extra: &[String], env: &[(&str, &str)]) -> Result {
    let mut args = vec!["test", "--workspace", "--locked"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args, env)
}

fn services() -> Result {
    run("bash", &["scripts/ci-services.sh"], &[])
}

fn quickstart(extra: &[String]) -> Result {
    let mut args = vec!["run", "--locked", "--bin", "quickstart"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    cargo(&args, &[])
}

fn compose_e2e(extra: &[String]) -> Result {
    let mut args = vec!["scripts/compose-e2e.sh"];
    args.extend(extra.iter().map(String::as_str));
    run("bash", &args, &[])
}

/// The flood measurement on a release build: the server pinned to core 0 (the
/// tool starts it so), the load to core 1 (`taskset`, when there is one).
fn flood(extra: &[String]) -> Result {
    cargo(
        &["build", "--locked", "--release", "-p", "tollgate-auth-server", "--bin", "auth-server"],
        &[],
    )?;
    cargo(&["build", "--locked", "--release", "-p", "tollgate-e2e", "--bin", "flood"], &[])?;
    let target = release_dir();
    let flood = target.join("flood").display().to_string();
    let server = target.join("auth-server").display().to_string();
    let mut args = vec!["-c", "1", flood.as_str(), "--server", server.as_str()];
    args.extend(extra.iter().map(String::as_str));
    run("taskset", &args, &[])
}

/// The benchmark on release builds of the three services and the bench
/// itself, which runs on core 1 and starts each server on core 0.
fn bench(extra: &[String]) -> Result {
    build_bench()?;
    let target = release_dir();
    let bench = target.join("bench").display().to_string();
    let bin_dir = target.display().to_string();
    let mut args = vec!["-c", "1", bench.as_str(), "--bin-dir", bin_dir.as_str()];
    args.extend(extra.iter().map(String::as_str));
    let two_cores = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if two_cores && Command::new("taskset").arg("-V").output().is_ok() {
        run("taskset", &args, &[])
    } else {
        run(&bench, &args[3..], &[])
    }
}

/// `bench --smoke` on debug builds: every phase once, briefly; and each
/// criterion micro-benchmark once (its test mode).
fn bench_smoke() -> Result {
    // The whole workspace, so its features are those the tests were built
    // with and only the benchmarks themselves are compiled anew (a `-p` list
    // unifies features differently and rebuilt half the tree).
    cargo(&["test", "--locked", "--workspace", "--benches"], &[])?;
    // The debug binaries the test build makes anyway (each service package
    // has integration tests, so cargo builds its binary with them; the bench
    // is a binary of the e2e package). Building them with `cargo build -p`
    // instead resolves features without the dev-dependencies (tokio's
    // `test-util`, …) and recompiled most of the tree: four minutes of CI.
    cargo(&["test", "--locked", "--workspace", "--no-run"], &[])?;
    let debug = release_dir().with_file_name("debug");
    let bench = debug.join("bench").display().to_string();
    run(&bench, &["--bin-dir", &debug.display().to_string(), "--smoke"], &[])
}

/// Builds the three services and the bench in release mode.
fn build_bench() -> Result {
    let mut args = vec!["build", "--locked", "--release"];
    for (package, bin) in [
        ("tollgate-auth-server", "auth-server"),
        ("tollgate-resource-server", "resource-server"),
        ("tollgate-notes-store", "notes-store"),
        ("tollgate-e2e", "bench"),
    ] {
        args.extend(["-p", package, "--bin", bin]);
    }
    cargo(&args, &[])
}

fn release_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"))
        .join("release")
}

/// The fuzz targets of `fuzz/` (docs/fuzzing.md).
const FUZZ_TARGETS: &[&str] = &[
    "bearer_token",
    "token_endpoint",
    "introspect_revoke",
    "device_endpoints",
    "authorize_query",
    "client_responses",
    "bootstrap_file",
];

/// The cargo-fuzz release the targets are run with, installed if missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Runs fuzz targets with cargo-fuzz (libFuzzer) for `--seconds` each, from
/// the committed seeds (`fuzz/seeds/<target>`, replayed first, so every crash
/// ever found and committed there is re-checked) plus a working corpus
/// (`fuzz/corpus/<target>`, not committed). libFuzzer needs the compiler's
/// unstable instrumentation flags: `RUSTC_BOOTSTRAP=1` allows them on the
/// stable toolchain, for this build only. No sanitizer: the code under test is
/// `forbid(unsafe_code)` Rust, where a bug shows as a panic (overflow checks
/// are on), and without ASan each target runs several times faster.
fn fuzz(extra: &[String]) -> Result {
    let mut seconds = "60".to_owned();
    let mut targets: Vec<&str> = Vec::new();
    let mut args = extra.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().ok_or("--seconds needs a value")?.clone(),
            name if FUZZ_TARGETS.contains(&name) => targets.push(name),
            other => return Err(format!("unknown fuzz target or flag {other:?}")),
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION));
    if !installed {
        cargo(&["install", "--locked", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION], &[])?;
    }
    let bootstrap = [("RUSTC_BOOTSTRAP", "1")];
    let fuzz_dir = root().join("fuzz");
    let in_fuzz = |args: &[&str]| -> Result {
        println!("--- (in fuzz/) cargo {}", args.join(" "));
        let status = Command::new("cargo")
            .args(args)
            .envs(bootstrap)
            .current_dir(&fuzz_dir)
            .status()
            .map_err(|e| format!("could not start cargo: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("`cargo {}` failed", args.join(" "))) }
    };
    in_fuzz(&["fuzz", "build", "--sanitizer", "none", "--debug-assertions"])?;
    let max_time = format!("-max_total_time={seconds}");
    for target in targets {
        let corpus = format!("corpus/{target}");
        let seeds = format!("seeds/{target}");
        std::fs::create_dir_all(fuzz_dir.join(&corpus)).map_err(|e| format!("{corpus}: {e}"))?;
        in_fuzz(&[
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            "--debug-assertions",
            target,
            &corpus,
            &seeds,
            "--",
            &max_time,
            // A single input taking 10 s, or 2 GiB, is a finding too.
            "-timeout=10",
            "-rss_limit_mb=2048",
            "-print_final_stats=1",
        ])?;
    }
    Ok(())
}

/// Everything CI checks, in the order that fails fastest.
fn ci() -> Result {
    // The storage suites' PostgreSQL variants fail rather than skip.
    let postgres =
        [("TOLLGATE_TEST_POSTGRES_URL", CI_POSTGRES_URL), ("TOLLGATE_REQUIRE_POSTGRES", "1")];
    let stages: [(&str, &dyn Fn() -> Result); 9] = [
        ("services", &services),
        ("lint", &lint),
        // The Kubernetes manifests: rendered, schema-checked, policy-scanned.
        ("k8s", &|| run("bash", &["scripts/k8s-check.sh"], &[])),
        ("test", &|| test(&[], &postgres)),
        // The benchmarks, once and briefly on the debug builds: they must
        // run; how fast is never asserted (docs/performance.md).
        ("bench smoke", &bench_smoke),
        ("quickstart", &|| quickstart(&[])),
        // The same narrated flow with TLS everywhere and mutual TLS between services.
        ("quickstart --tls", &|| quickstart(&["--tls".into()])),
        ("fuzz", &|| fuzz(&["--seconds".into(), "20".into()])),
        ("compose-e2e", &|| compose_e2e(&["--profile".into(), "dev".into()])),
    ];
    // Each stage's time, so whoever shortens CI knows where it goes.
    let started = std::time::Instant::now();
    let mut times = Vec::new();
    for (name, stage) in stages {
        let begun = std::time::Instant::now();
        let outcome = stage();
        times.push(format!("{name} {} s", begun.elapsed().as_secs()));
        eprintln!("xtask ci: {} (total {} s)", times.join(", "), started.elapsed().as_secs());
        outcome?;
    }
    Ok(())
}

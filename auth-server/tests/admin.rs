//! The admin commands, run as the real binary against a data directory, then
//! checked by using what they registered.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::Arc;

use tollgate_auth_server::{Application, Config};
use tollgate_token::ManualClock;

fn admin(data_dir: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auth-server"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("admin")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn admin_registered_clients_and_users_can_authenticate() {
    let dir = tempfile::tempdir().unwrap();
    let out = admin(
        dir.path(),
        &[
            "add-client",
            "--client-id",
            "batch",
            "--grant-type",
            "client_credentials",
            "--scope",
            "reports:read",
        ],
        "",
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("the generated secret is shown once")
        .to_owned();
    assert!(secret.len() >= 43, "256 bits, base64url");
    admin(dir.path(), &["add-user", "--username", "carol"], "carol-password\n");

    // A rotation started by the operator: published now, signing later.
    let out = admin(dir.path(), &["rotate-keys"], "");
    assert!(out.starts_with("new signing key "), "{out}");

    let mut config = Config::local(dir.path());
    config.data_dir = dir.path().to_owned();
    let app = Application::build(config, Arc::new(ManualClock::starting_now())).await.unwrap();
    let token_url = format!("http://{}/token", app.http_addr());
    let jwks_url = format!("http://{}/jwks.json", app.http_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let http = reqwest::Client::new();
    let ok = http
        .post(&token_url)
        .basic_auth("batch", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = http
        .post(&token_url)
        .basic_auth("batch", Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    // Both keys are published: the first, and the one rotate-keys added.
    let jwks: serde_json::Value = http.get(&jwks_url).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);

    // The stored secret is only a hash: the plaintext is nowhere in the database.
    let db = std::fs::read(dir.path().join("auth.db")).unwrap();
    let wal = std::fs::read(dir.path().join("auth.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        assert!(!bytes.windows(14).any(|w| w == b"carol-password"));
    }
}

/// The Kubernetes init container's command: it fails, saying what to run, on
/// a database `admin init` has not prepared, and passes once it has.
#[test]
fn wait_init_waits_for_the_migration_jobs_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let wait = || {
        Command::new(env!("CARGO_BIN_EXE_auth-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["admin", "wait-init", "--timeout-secs", "1"])
            .output()
            .unwrap()
    };
    let before = wait();
    assert!(!before.status.success());
    let stderr = String::from_utf8_lossy(&before.stderr);
    assert!(stderr.contains("no signing key yet"), "{stderr}");
    assert!(stderr.contains("run `auth-server admin init`"), "{stderr}");

    let out = admin(dir.path(), &["init"], "");
    assert!(out.contains("database ready; signing key "), "{out}");
    let after = wait();
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    assert_eq!(String::from_utf8_lossy(&after.stdout), "database ready\n");
}

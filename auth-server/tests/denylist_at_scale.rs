//! The denylist at scale: 200,000 revoked tokens, more than one gRPC message
//! could carry, synced whole by a real `Denylist` from this server's
//! `RevocationListService`, page by page, on SQLite and on PostgreSQL.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use tollgate_service_kit::tls::ClientTls;

use base64::Engine as _;
use tollgate_auth_server::{Application, Config};
use tollgate_service_kit::revocation::{Denylist, RevocationConfig};
use tollgate_token::{Clock as _, ManualClock, Secret};

/// Past the ~130,000 entries at which one message would meet tonic's 4 MiB limit.
const ROWS: usize = 200_000;
/// Rows per INSERT: 3 values each stays under SQLite's 32,766 bound parameters;
/// here they are literals, and 5,000 rows make a statement of about 250 kB,
/// under SQLite's 1 MB statement length.
const BATCH: usize = 5_000;
/// Generous for a debug build on a busy machine; the sync takes a few seconds.
const PATIENCE: Duration = Duration::from_secs(120);

const SECRET: &str = "0123456789abcdef0123456789abcdef-svc";
const BOOTSTRAP: &str = r#"
[[clients]]
client_id = "svc"
secret = "0123456789abcdef0123456789abcdef-svc"
grant_types = ["client_credentials"]
scopes = ["notes:count"]
"#;

/// The `n`th bulk `jti`: 22 characters, like a minted one, sorting by `n`.
fn bulk_jti(n: usize) -> String {
    format!("bulk-{n:017}")
}

/// Revokes `ROWS` tokens straight into the table, a batch per statement.
/// Their expiries spread over ten minutes from a minute on, so the list's
/// (exp, jti) order is not the `jti`s' and a token issued now (300 s) falls
/// in the middle of it.
async fn bulk_revoke(url: &str, now: i64) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    for start in (0..ROWS).step_by(BATCH) {
        // Literals, not binds: sqlx's Any driver has no portable multi-row
        // bind, and these values are digits made here.
        let values = (start..(start + BATCH).min(ROWS))
            .map(|n| format!("('{}', {}, {now})", bulk_jti(n), now + 60 + (n % 600) as i64))
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(&format!(
            "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at) VALUES {values}"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

/// Syncs now, trying again while the connection is new or slow (as the
/// service itself would at its next tick).
async fn sync(denylist: &Denylist) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match denylist.sync_now().await {
                Ok(()) => return,
                Err(err) if err.is_transient() => {}
                Err(err) => panic!("sync failed: {err}"),
            }
        }
    })
    .await
    .expect("the denylist to sync");
}

/// The `jti` claim of a JWT (already verified by whoever issued it).
fn jti_of(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap(),
    )
    .unwrap();
    claims["jti"].as_str().unwrap().to_owned()
}

async fn two_hundred_thousand_revoked_tokens_sync_whole(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.toml");
    std::fs::write(&bootstrap, BOOTSTRAP).unwrap();
    let mut config = Config::local(dir.path());
    config.database_url = Some(url.to_owned());
    config.bootstrap = Some(bootstrap);
    let clock = Arc::new(ManualClock::starting_now());
    let app = Application::build(config, clock.clone()).await.unwrap();
    let (http, grpc) = (app.http_addr(), app.grpc_addr());
    let now = clock.now();
    bulk_revoke(url, now).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let (denylist, sync_task) = Denylist::spawn(RevocationConfig {
        auth_grpc_url: format!("http://{grpc}"),
        client_id: "svc".into(),
        client_secret: Some(Secret::new(SECRET)),
        // Only on cue here.
        interval: Duration::from_secs(3600),
        max_staleness: Duration::from_secs(7200),
        tls: ClientTls::public_roots(),
    })
    .unwrap();
    sync(&denylist).await;
    assert_eq!(denylist.len(), ROWS);
    for n in [0, ROWS / 2, ROWS - 1] {
        assert!(denylist.contains(&bulk_jti(n)), "{} is missing", bulk_jti(n));
    }

    // A revocation through the endpoint after the bulk: in force after the
    // next sync, though it falls on a page in the middle.
    let http_client = reqwest::Client::new();
    let issued: serde_json::Value = http_client
        .post(format!("http://{http}/token"))
        .basic_auth("svc", Some(SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = issued["access_token"].as_str().unwrap();
    http_client
        .post(format!("http://{http}/revoke"))
        .basic_auth("svc", Some(SECRET))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let jti = jti_of(token);
    assert!(!denylist.contains(&jti));
    sync(&denylist).await;
    assert!(denylist.contains(&jti));
    assert_eq!(denylist.len(), ROWS + 1);

    sync_task.abort();
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denylist_of_200_000_tokens_syncs_whole_over_grpc_on_each_backend() {
    tollgate_service_kit::testing::on_each_backend(two_hundred_thousand_revoked_tokens_sync_whole)
        .await;
}

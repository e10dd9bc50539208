//! Opening a service's database: one way for every service, so SQLite (the
//! embedded default) and PostgreSQL (for compose and scale-out) behave the same
//! everywhere: queries go through sqlx's `Any` driver with `$N` placeholders and
//! the types both share; each backend has its own migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

/// A service's migrations, one set per backend (the SQL differs only in types:
/// SQLite's INTEGER is 64-bit, PostgreSQL's is not, so there it is BIGINT).
#[derive(Debug)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// The calling crate's [`Migrations`], from its `migrations/sqlite` and
/// `migrations/postgres` folders (embedded at compile time by `sqlx::migrate!`;
/// the crate needs `sqlx` with its `migrate` feature, as every service has).
#[macro_export]
macro_rules! migrations {
    () => {
        $crate::db::Migrations {
            sqlite: &::sqlx::migrate!("./migrations/sqlite"),
            postgres: &::sqlx::migrate!("./migrations/postgres"),
        }
    };
}

/// A service's database, as two pools: `reads` for statements that only read,
/// `writes` for every statement or transaction that writes.
///
/// SQLite admits one writer at a time. A second connection that wants to
/// write waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 … ms between
/// tries whatever happens meanwhile: under concurrent grants most of the time
/// went to those sleeps (about 500 code exchanges per second where the disk
/// allows several thousand). So on SQLite `writes` is one connection, and
/// writers queue in-process, in the pool, each woken the moment the connection
/// is free; readers keep their own connections beside it (WAL). On PostgreSQL,
/// which locks rows rather than the database, both are the same pool.
#[derive(Debug, Clone)]
pub struct Database {
    pub reads: AnyPool,
    pub writes: AnyPool,
}

/// Connections to a SQLite database that only read (WAL readers do not wait
/// for the writer).
pub const SQLITE_READ_CONNECTIONS: u32 = 4;
/// Connections to a SQLite database that write: one, see [`Database`].
pub const SQLITE_WRITE_CONNECTIONS: u32 = 1;
/// The most page cache one SQLite connection keeps, KiB (SQLite's default is
/// 2,000 KiB). Five connections at the default held up to 10 MiB of a
/// service's memory budget for pages the kernel caches anyway; at this bound
/// they hold at most 2.5 MiB (docs/performance.md, "Memory").
pub const SQLITE_CACHE_KIB: u32 = 512;
/// Connections to a PostgreSQL database, reads and writes together.
pub const POSTGRES_CONNECTIONS: u32 = 16;
/// How long a statement waits for a free connection before it fails.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `url` (`sqlite://…?mode=rwc` or `postgres://…`), creating a SQLite
/// file if needed, and applies the backend's migrations.
pub async fn connect(url: &str, migrations: &Migrations) -> Result<Database, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let postgres = url.starts_with("postgres:") || url.starts_with("postgresql:");
    if postgres {
        // A server connection can break between uses (a restart, a
        // failover): each is checked as it is taken from the pool.
        let pool = pool(url, POSTGRES_CONNECTIONS, true).await?;
        migrations.postgres.run(&pool).await?;
        return Ok(Database { reads: pool.clone(), writes: pool });
    }
    // The writer first: it creates the file and the WAL, and migrates. A
    // connection to a local file does not break between uses, so it is not
    // pinged each time it is taken (a round trip to sqlx's SQLite thread).
    let writes = pool(url, SQLITE_WRITE_CONNECTIONS, false).await?;
    migrations.sqlite.run(&writes).await?;
    let reads = pool(url, SQLITE_READ_CONNECTIONS, false).await?;
    Ok(Database { reads, writes })
}

async fn pool(
    url: &str,
    max_connections: u32,
    test_before_acquire: bool,
) -> Result<AnyPool, sqlx::Error> {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(test_before_acquire)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                if conn.backend_name() == "SQLite" {
                    // WAL lets readers run beside the one writer; a busy timeout
                    // covers another process writing the same file (an admin
                    // command beside the server); foreign keys are off by
                    // default in SQLite.
                    // The page cache is bounded per connection
                    // ([`SQLITE_CACHE_KIB`]): what misses it is a read from
                    // the kernel's page cache, not the disk.
                    conn.execute(
                        format!(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                             PRAGMA foreign_keys = ON; PRAGMA cache_size = -{SQLITE_CACHE_KIB};"
                        )
                        .as_str(),
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await
}

/// The URL of a SQLite database file `name` under `data_dir`, created on first use.
pub fn sqlite_url(data_dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join(name).display())
}

/// The database a service should open: `explicit` if configured, else the
/// embedded SQLite file `name` under `data_dir` (the directory created if need be,
/// so a fresh checkout needs no set-up).
pub fn database_url(
    explicit: Option<&str>,
    data_dir: &std::path::Path,
    name: &str,
) -> std::io::Result<String> {
    match explicit {
        Some(url) => Ok(url.to_owned()),
        None => {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                std::io::Error::new(e.kind(), format!("creating {}: {e}", data_dir.display()))
            })?;
            Ok(sqlite_url(data_dir, name))
        }
    }
}

/// For tests that run against both backends: a fresh, empty PostgreSQL database
/// on the server `TOLLGATE_TEST_POSTGRES_URL` names (`.ci/run` starts one and sets
/// it). `None`, with a note on stderr, when it is not set, unless
/// `TOLLGATE_REQUIRE_POSTGRES` is set (as in CI), which makes the test fail: CI
/// never passes without having run the PostgreSQL variants.
///
/// Test support only (the `test-support` feature, enabled by dev-dependencies).
#[cfg(feature = "test-support")]
pub async fn fresh_postgres_database() -> Option<String> {
    let Ok(server) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("TOLLGATE_REQUIRE_POSTGRES").is_none(),
            "TOLLGATE_REQUIRE_POSTGRES is set but TOLLGATE_TEST_POSTGRES_URL is not"
        );
        eprintln!("skipped: set TOLLGATE_TEST_POSTGRES_URL to run the PostgreSQL variant");
        return None;
    };
    sqlx::any::install_default_drivers();
    let fail =
        |what: &str, err: &dyn std::fmt::Display| -> ! { panic!("{what} on {server}: {err}") };
    let admin = AnyPool::connect(&server).await.unwrap_or_else(|e| fail("connecting", &e));
    let mut suffix = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut suffix);
    let name =
        format!("tollgate_test_{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| fail("creating a database", &e));
    admin.close().await;
    let mut url = url::Url::parse(&server).unwrap_or_else(|e| fail("parsing the URL", &e));
    url.set_path(&name);
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SQLite connection, reading or writing, is opened with the
    /// documented bounds: WAL, foreign keys, and at most
    /// [`SQLITE_CACHE_KIB`] of page cache (SQLite's own default is 2,000 KiB).
    #[tokio::test]
    async fn every_sqlite_connection_has_the_documented_settings() {
        static NONE: Migrator = Migrator::DEFAULT;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = sqlite_url(dir.path(), "bounds.db");
        let db = connect(&url, &Migrations { sqlite: &NONE, postgres: &NONE })
            .await
            .expect("the database");
        for (pool, connections) in
            [(&db.reads, SQLITE_READ_CONNECTIONS), (&db.writes, SQLITE_WRITE_CONNECTIONS)]
        {
            // Hold every connection of the pool at once, so each is checked.
            let mut held = Vec::new();
            for _ in 0..connections {
                held.push(pool.acquire().await.expect("a connection"));
            }
            for conn in &mut held {
                let row = |pragma: &'static str| sqlx::query_scalar::<_, i64>(pragma);
                let cache = row("PRAGMA cache_size").fetch_one(&mut **conn).await.expect("cache");
                assert_eq!(cache, -i64::from(SQLITE_CACHE_KIB), "cache_size, in -KiB");
                let keys = row("PRAGMA foreign_keys").fetch_one(&mut **conn).await.expect("keys");
                assert_eq!(keys, 1);
            }
            assert_eq!(pool.options().get_max_connections(), connections);
        }
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&db.reads)
            .await
            .expect("journal mode");
        assert_eq!(mode, "wal");
    }
}

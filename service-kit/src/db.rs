//! Opening a service's database: one way for every service, so SQLite (the
//! embedded default) and PostgreSQL (for compose and scale-out) behave the same
//! everywhere: queries go through sqlx's `Any` driver with `$N` placeholders and
//! the types both share; each backend has its own migrations.

use std::str::FromStr;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{Acquire, AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

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
/// `writes` for every statement or transaction that writes, and
/// [`Database::transaction`] for the transactions a hot path makes.
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
    /// On SQLite, the queue to the task that commits transactions in groups.
    group_commit: Option<mpsc::Sender<Job>>,
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
/// The most transactions one SQLite commit carries ([`Database::transaction`]).
pub const GROUP_COMMIT_MAX: usize = 64;
/// The most transactions waiting for the SQLite writer; a caller beyond them
/// waits for room (their futures are the callers' own, bounded by the
/// servers' concurrency limits).
pub const GROUP_COMMIT_QUEUE: usize = 1024;

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
        return Ok(Database { reads: pool.clone(), writes: pool, group_commit: None });
    }
    // The writer first: it creates the file and the WAL, and migrates. A
    // connection to a local file does not break between uses, so it is not
    // pinged each time it is taken (a round trip to sqlx's SQLite thread).
    let writes = pool(url, SQLITE_WRITE_CONNECTIONS, false).await?;
    migrations.sqlite.run(&writes).await?;
    let reads = pool(url, SQLITE_READ_CONNECTIONS, false).await?;
    let (queue, jobs) = mpsc::channel(GROUP_COMMIT_QUEUE);
    tokio::spawn(commit_in_groups(writes.clone(), jobs));
    Ok(Database { reads, writes, group_commit: Some(queue) })
}

/// What a [`Database::transaction`] job decided about its own statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<T> {
    /// Keep what it wrote; answer `T` once that is durable.
    Commit(T),
    /// Undo what it wrote (a spent token whose grant turned out revoked, say);
    /// answer `T`.
    Rollback(T),
}

/// A transaction's statements, run on the connection given, with no other
/// I/O: everything it needs is moved into it.
pub type Statements<T, E> =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<Decision<T>, E>> + Send>;

impl Database {
    /// Runs `statements` as one transaction: either all of what it keeps is
    /// written or none. The answer comes once the transaction is committed
    /// (durable), rolled back, or failed.
    ///
    /// On PostgreSQL this is a transaction of its own on the pool. On SQLite,
    /// where every commit waits for an fsync and one connection writes, the
    /// transactions that arrive while one commit is under way are run
    /// together, each inside a savepoint of one transaction (so one that
    /// fails or rolls back undoes only itself), and committed with one fsync
    /// (group commit). Up to [`GROUP_COMMIT_MAX`] share a commit. Nobody is
    /// answered before the commit that holds their writes: if it fails, every
    /// transaction in it fails. A caller that stops waiting does not stop its
    /// transaction, as a dropped connection after a commit would not.
    pub async fn transaction<T, E>(&self, statements: Statements<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
    {
        let Some(queue) = &self.group_commit else {
            let mut tx = self.writes.begin().await?;
            return match statements(&mut tx).await? {
                Decision::Commit(answer) => {
                    tx.commit().await?;
                    Ok(answer)
                }
                Decision::Rollback(answer) => {
                    tx.rollback().await?;
                    Ok(answer)
                }
            };
        };
        let (reply, replied) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let (keep, answer) = match statements(conn).await {
                    Ok(Decision::Commit(answer)) => (true, Ok(answer)),
                    Ok(Decision::Rollback(answer)) => (false, Ok(answer)),
                    // Its own failure: undone, whatever the others do.
                    Err(err) => (false, Err(err)),
                };
                let deliver: Deliver = Box::new(move |committed| {
                    let answer = match (answer, committed) {
                        (Err(own), _) => Err(own),
                        (Ok(answer), Ok(())) => Ok(answer),
                        (Ok(_), Err(commit)) => Err(E::from(commit)),
                    };
                    // The caller may have stopped waiting; nothing to tell.
                    let _ = reply.send(answer);
                });
                Ran { keep, deliver }
            })
        });
        queue.send(job).await.map_err(|_| sqlx::Error::WorkerCrashed)?;
        replied.await.map_err(|_| sqlx::Error::WorkerCrashed)?
    }
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

/// A queued transaction, its types erased.
type Job = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Ran> + Send>;
/// Tells a job's caller how it ended, given how its group's commit ended.
type Deliver = Box<dyn FnOnce(Result<(), sqlx::Error>) + Send>;

/// A job that has run inside its savepoint.
struct Ran {
    /// Release the savepoint (keep its writes) rather than roll back to it.
    keep: bool,
    deliver: Deliver,
}

/// The SQLite writer: takes every job waiting (up to [`GROUP_COMMIT_MAX`]),
/// runs each in a savepoint of one transaction, commits once, then answers
/// them. Ends when the last [`Database`] clone is dropped.
async fn commit_in_groups(writes: AnyPool, mut jobs: mpsc::Receiver<Job>) {
    let mut group = Vec::with_capacity(GROUP_COMMIT_MAX);
    while jobs.recv_many(&mut group, GROUP_COMMIT_MAX).await > 0 {
        // A panic outside a job (in sqlx, say) fails this group's callers
        // (their answers are dropped), not the writer: later groups commit.
        if AssertUnwindSafe(commit_group(&writes, &mut group)).catch_unwind().await.is_err() {
            tracing::error!("a group commit panicked; its transactions failed");
        }
        group.clear();
    }
}

/// Runs `group` and answers each of its callers.
async fn commit_group(writes: &AnyPool, group: &mut Vec<Job>) {
    let mut ran = Vec::with_capacity(group.len());
    let committed = run_group(writes, group.drain(..), &mut ran).await;
    for job in ran {
        (job.deliver)(match &committed {
            Ok(()) => Ok(()),
            // One error, many callers: each is told the commit failed.
            Err(err) => Err(sqlx::Error::Protocol(format!("the group commit failed: {err}"))),
        });
    }
}

/// One group: a transaction, a savepoint per job, one commit. A job not run
/// (an error before its turn) is dropped, which its caller sees as a failure.
async fn run_group(
    writes: &AnyPool,
    group: impl Iterator<Item = Job>,
    ran: &mut Vec<Ran>,
) -> Result<(), sqlx::Error> {
    let mut conn = writes.acquire().await?;
    let result = run_group_on(&mut conn, group, ran).await;
    if result.is_err() {
        // SQLite rolls a whole transaction back by itself on some failures
        // (a full disk, an I/O error); sqlx's count of open savepoints on
        // this connection is then wrong, and later BEGINs would nest in a
        // transaction nobody commits. A fresh connection starts clean.
        conn.close_on_drop();
    }
    result
}

async fn run_group_on(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    group: impl Iterator<Item = Job>,
    ran: &mut Vec<Ran>,
) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await?;
    for job in group {
        let mut savepoint = tx.begin().await?;
        // A job that panics fails alone: its caller sees its answer dropped,
        // its writes are undone, and the writer goes on with the others.
        let Ok(outcome) = AssertUnwindSafe(job(&mut savepoint)).catch_unwind().await else {
            savepoint.rollback().await?;
            continue;
        };
        let keep = outcome.keep;
        ran.push(outcome);
        if keep {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
    }
    tx.commit().await
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

    /// A PostgreSQL URL asking for TLS (`sslmode=verify-full`, as the
    /// Kubernetes production overlay's) gets it: sqlx is built with TLS, so
    /// the connection asks the server for it, and a server that offers none
    /// is refused as such, never "built without TLS support".
    #[tokio::test]
    async fn a_postgres_url_asking_for_tls_asks_the_server_for_it() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        static NONE: Migrator = Migrator::DEFAULT;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            // SSLRequest: length 8, code 80877103; answered "N": no TLS here.
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).await.unwrap();
            socket.write_all(b"N").await.unwrap();
            request
        });
        let url = format!("postgres://tollgate@127.0.0.1:{port}/tollgate_auth?sslmode=verify-full");
        let Err(refused) = connect(&url, &Migrations { sqlite: &NONE, postgres: &NONE }).await
        else {
            panic!("no TLS, no connection");
        };
        assert_eq!(
            refused.to_string(),
            "error occurred while attempting to establish a TLS connection: server does not support TLS"
        );
        assert_eq!(server.await.unwrap(), [0, 0, 0, 8, 4, 210, 22, 47]);
    }

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

    async fn table(dir: &tempfile::TempDir) -> Database {
        static NONE: Migrator = Migrator::DEFAULT;
        let url = sqlite_url(dir.path(), "group.db");
        let db = connect(&url, &Migrations { sqlite: &NONE, postgres: &NONE })
            .await
            .expect("the database");
        sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .execute(&db.writes)
            .await
            .expect("the table");
        db
    }

    /// Inserts `id` (twice when `twice`, which fails on the primary key) and
    /// decides `decision` about it.
    fn insert(id: i64, twice: bool, commit: bool) -> Statements<i64, sqlx::Error> {
        Box::new(move |conn| {
            Box::pin(async move {
                for _ in 0..if twice { 2 } else { 1 } {
                    sqlx::query("INSERT INTO t (id) VALUES ($1)")
                        .bind(id)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(if commit { Decision::Commit(id) } else { Decision::Rollback(id) })
            })
        })
    }

    async fn ids(db: &Database) -> Vec<i64> {
        sqlx::query_scalar("SELECT id FROM t ORDER BY id").fetch_all(&db.reads).await.expect("ids")
    }

    /// Transactions that share one commit stay separate: one that fails or
    /// rolls back undoes only its own writes, and each caller gets its own
    /// answer, after the commit.
    #[tokio::test]
    async fn a_group_commit_keeps_each_transaction_apart() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = table(&dir).await;
        // Queued together, so the writer takes them as one group.
        let (kept, failed, undone, kept_too) = tokio::join!(
            db.transaction(insert(1, false, true)),
            db.transaction(insert(2, true, true)),
            db.transaction(insert(3, false, false)),
            db.transaction(insert(4, false, true)),
        );
        assert_eq!(kept.expect("kept"), 1);
        let failed = failed.expect_err("a duplicate key fails its transaction");
        assert!(failed.to_string().contains("UNIQUE"), "its own error: {failed}");
        assert_eq!(undone.expect("rolled back, answered"), 3);
        assert_eq!(kept_too.expect("kept"), 4);
        assert_eq!(ids(&db).await, [1, 4], "only the kept transactions' writes");
    }

    /// Many concurrent transactions, far more than one group holds, are all
    /// committed and answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_queued_transaction_is_committed_and_answered() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = table(&dir).await;
        let count = 3 * GROUP_COMMIT_MAX as i64 + 5;
        let calls: Vec<_> = (0..count)
            .map(|id| {
                let db = db.clone();
                tokio::spawn(async move { db.transaction(insert(id, false, true)).await })
            })
            .collect();
        for (id, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await.expect("the task").expect("committed"), id as i64);
        }
        assert_eq!(ids(&db).await, (0..count).collect::<Vec<_>>());
    }

    /// A transaction that panics fails alone; the writer goes on.
    #[tokio::test]
    async fn a_panicking_transaction_fails_alone() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = table(&dir).await;
        let panics: Statements<i64, sqlx::Error> = Box::new(|conn| {
            Box::pin(async move {
                sqlx::query("INSERT INTO t (id) VALUES (9)").execute(&mut *conn).await?;
                panic!("a bug in a transaction")
            })
        });
        let (panicked, kept) =
            tokio::join!(db.transaction(panics), db.transaction(insert(1, false, true)));
        assert!(matches!(panicked, Err(sqlx::Error::WorkerCrashed)), "{panicked:?}");
        assert_eq!(kept.expect("kept"), 1);
        assert_eq!(db.transaction(insert(2, false, true)).await.expect("the writer lives"), 2);
        assert_eq!(ids(&db).await, [1, 2], "the panicking transaction's write is undone");
    }
}

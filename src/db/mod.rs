//! The database layer: one diesel code base over SQLite and PostgreSQL.
//!
//! [`Db`] is the only door: [`Db::read`] lends a [`Read`] and [`Db::write`]
//! (with [`Db::ingest`] and [`Db::bookkeep`]) a [`Write`], a transaction on
//! both backends, to the model functions of the modules below, on the
//! blocking pool, never on an async worker thread. The connection itself,
//! diesel and the schema stay in here (`pool`, `access`).

mod access;
pub(crate) mod admins;
pub(crate) mod alerts;
pub(crate) mod audit;
pub(crate) mod claims;
pub(crate) mod deliveries;
pub(crate) mod delivery_list;
pub(crate) mod event_list;
pub(crate) mod events;
#[cfg(test)]
mod golden;
pub(crate) mod handlers;
pub(crate) mod health;
pub(crate) mod jobs;
pub(crate) mod logs;
mod pool;
mod prepared;
pub(crate) mod record;
mod schema;
pub mod scratch;
pub mod seed;
pub(crate) mod sessions;
pub(crate) mod settings;
pub(crate) mod signins;
mod sqlite_lock;
mod text;
pub(crate) mod tokens;
mod writer;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use access::{Commit, transaction};
pub use access::{Read, Write};
use chrono::{NaiveDateTime, SubsecRound, Utc};
/// What every statement answers: a row (or rows) or the database's error.
pub use diesel::QueryResult;
use diesel::{RunQueryDsl, connection::SimpleConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use pool::{ConnectionManager, DbConnection, MultiBackend, Target, is_connection_lost};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The `application_name` of this process's PostgreSQL connections is this
/// followed by [`Db::instance`].
pub const APPLICATION_NAME_PREFIX: &str = "provisiond ";

/// How long a statement waits, at most, for a pooled connection: with the
/// database down, a request is answered 503 after this, not after r2d2's 30 s.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// While the last statement found the database unavailable, the wait is this
/// short: requests queued behind one another (ingestion's batches) are each
/// answered 503 at once, not one wait after another. A connection made as the
/// database comes back is taken within it.
const POOL_WAIT_WHILE_DOWN: Duration = Duration::from_millis(300);

/// `/readyz` answers within this, whatever the database does.
const PING_WITHIN: Duration = Duration::from_millis(800);

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database URL `{0}` is not understood: use sqlite://path or postgres://user@host/db")]
    BadUrl(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("cannot apply database migrations: {0}")]
    Migration(String),
    #[error("database task failed: {0}")]
    Task(String),
    #[error("cannot commit: {0}")]
    Commit(String),
    /// The database cannot be reached or cannot take writes now (the text
    /// says why); trying again later may succeed.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    InUse(String),
}

impl DbError {
    /// True when the query found no row.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
    }

    /// True when a unique constraint refused the row (another writer stored
    /// the same key first).
    pub fn is_unique_violation(&self) -> bool {
        matches!(
            self,
            DbError::Query(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
        )
    }

    /// True when PostgreSQL aborted the transaction to break a deadlock or a
    /// serialization conflict with another one: the same transaction, tried
    /// again, may well succeed, and the database is not down.
    pub fn is_conflict(&self) -> bool {
        use diesel::result::{DatabaseErrorKind, Error};
        match self {
            DbError::Query(Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)) => true,
            DbError::Query(e @ Error::DatabaseError(..)) => e.to_string().contains("deadlock detected"),
            _ => false,
        }
    }

    /// True when trying the same again later may succeed: the database is
    /// unavailable, or another transaction was in the way.
    pub fn is_transient(&self) -> bool {
        self.is_unavailable() || self.is_conflict()
    }

    /// True when the database, not the request, is the problem and the same
    /// request may succeed later: no connection (PostgreSQL down or
    /// restarting), a connection lost, a full disk, a lock held too long.
    /// Users get 503 with `Retry-After` for these.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Pool(_) | DbError::Connect(_) | DbError::Unavailable(_) => true,
            DbError::Query(e) => is_connection_lost(e) || says_unavailable(&e.to_string()),
            DbError::Commit(text) => says_unavailable(text),
            DbError::BadUrl(_) | DbError::Migration(_) | DbError::Task(_) | DbError::InUse(_) => false,
        }
    }
}

/// Whether a database's error text says it is down, restarting or full
/// rather than that the statement is wrong (SQLite gives no other sign;
/// PostgreSQL's `57P0x`, `53100` and `08xxx` errors carry these texts).
fn says_unavailable(text: &str) -> bool {
    const TEXTS: &[&str] = &[
        "database or disk is full",
        "disk i/o error",
        "database is locked",
        "no space left on device",
        "could not extend file",
        "could not write",
        "the database system is",
        "terminating connection",
        "server closed the connection",
        "no connection to the server",
        "connection refused",
        "could not connect",
        "canceling statement due to conflict with recovery",
    ];
    let text = text.to_lowercase();
    TEXTS.iter().any(|t| text.contains(t))
}

type Pool = r2d2::Pool<ConnectionManager>;

/// What SQLite's one writer has done so far.
#[derive(Debug, Clone, Copy)]
pub struct WriterCounts {
    /// Transactions committed (or rolled back).
    pub commits: u64,
    /// Writes run in them.
    pub jobs: u64,
}

/// The database handle the app and the dispatcher share.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
    /// The pool's count of connections found lost.
    lost: Arc<AtomicU64>,
    /// This process's name, unique to it: on its leases and, on PostgreSQL,
    /// in its connections' `application_name`.
    instance: Arc<str>,
    /// Whether the last statement found the database unavailable.
    down: Arc<std::sync::atomic::AtomicBool>,
    /// SQLite: the lock on the file, held while this process uses it.
    lock: Option<Arc<std::sync::Mutex<Option<sqlite_lock::FileLock>>>>,
    /// SQLite takes one writer at a time, and a writer that finds the lock
    /// taken sleeps in growing steps (up to 100 ms) before trying again. The
    /// hot writers (ingestion, claims, the recorder) queue for one writer
    /// connection instead (see `writer`).
    writer: Option<writer::Writer>,
}

impl Db {
    /// Connects (failing within seconds with the real cause) and applies the
    /// embedded migrations of the backend.
    pub fn connect(url: &str, pool_size: u32) -> Result<Self, DbError> {
        Self::connect_with(url, pool_size, 0)
    }

    /// [`Db::connect`], with SQLite's file held to `sqlite_max_bytes` (0: no limit).
    pub fn connect_with(url: &str, pool_size: u32, sqlite_max_bytes: u64) -> Result<Self, DbError> {
        let manager = ConnectionManager::new(url, sqlite_max_bytes)?;
        let backend = manager.target.backend();
        // One process per SQLite file: taken before anything touches it.
        let lock = match &manager.target {
            Target::Sqlite(path) => Some(Arc::new(std::sync::Mutex::new(Some(sqlite_lock::FileLock::take(path)?)))),
            Target::Postgres(_) => None,
        };
        // One direct connection first: a refused connection or a bad password
        // is reported as it is, not as a pool timeout.
        let mut first = manager.open()?;
        if let DbConnection::Sqlite(conn) = &mut first {
            conn.batch_execute("PRAGMA journal_mode = WAL;")?;
        }
        run_migrations(&mut first)?;
        let writer = match backend {
            Backend::Sqlite => {
                let reopen = manager.clone();
                let reopen: writer::Reopen = Box::new(move || reopen.open());
                Some(writer::Writer::start(first, reopen)?)
            }
            Backend::Postgres => None,
        };
        let (lost, instance) = (manager.lost.clone(), manager.instance.clone());
        // Connections are kept until they break (none is closed for being
        // idle or old): on PostgreSQL they say this process is alive.
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .idle_timeout(None)
            .max_lifetime(None)
            .connection_timeout(POOL_WAIT)
            .build(manager)?;
        Ok(Self { pool, backend, lost, down: Default::default(), instance, lock, writer })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This process's name, unique to it (its leases carry it; on
    /// PostgreSQL a lease whose owner has no connection open is a dead
    /// process's, see [`deliveries::Delivery::release_dead`]).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Lets another process use the SQLite file (once this one has stopped
    /// using it: at the end of a run). The lock also ends with the process.
    pub fn release_lock(&self) {
        if let Some(lock) = &self.lock {
            lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// SQLite: the write transactions its writer has run (several queued
    /// writes share one) and the writes in them; `None` on PostgreSQL.
    pub fn writer_counts(&self) -> Option<WriterCounts> {
        self.writer.as_ref().map(writer::Writer::counts)
    }

    /// Runs `f`, which reads, with a pooled connection.
    pub async fn read<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Read<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.pooled(move |conn| f(&mut Read::new(conn))).await
    }

    /// Runs `f` in a transaction that writes, durably committed when the
    /// result comes; an error of `f` rolls back all of `f`'s writes. On
    /// SQLite it runs on the one writer connection, committed together with
    /// the writes queued beside it, each rolled back on its own error.
    pub async fn write<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Other, Some(Commit::Durable), f).await
    }

    /// [`Db::write`] for ingestion, whose client waits for the commit to be
    /// acknowledged: on SQLite it goes ahead of the writes queued for the
    /// server's own bookkeeping (see [`writer`]).
    pub async fn ingest<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Ingestion, Some(Commit::Durable), f).await
    }

    /// [`Db::ingest`] for a write that is one statement on PostgreSQL (the
    /// group commit): PostgreSQL runs it as a transaction of its own, without
    /// the round trips of `BEGIN` and `COMMIT`.
    pub async fn ingest_one<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Ingestion, None, f).await
    }

    /// [`Db::write`] for the dispatcher's bookkeeping (claims, recorded
    /// attempts, leases): on PostgreSQL its commit returns before the WAL
    /// reaches the disk (see [`access::Commit::Relaxed`]).
    pub async fn bookkeep<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Other, Some(Commit::Relaxed), f).await
    }

    /// [`Db::bookkeep`] for a write that is one statement on PostgreSQL (the
    /// claim, whose statement relaxes its own commit): a transaction of its
    /// own there, without the round trips of `BEGIN` and `COMMIT`.
    pub async fn bookkeep_one<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Other, None, f).await
    }

    /// `commit`: `None` for a write of one statement on PostgreSQL.
    async fn write_as<F, T>(&self, class: writer::Class, commit: Option<Commit>, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        match (&self.writer, commit) {
            (Some(writer), _) => writer.run(f, class).await,
            (None, Some(commit)) => self.pooled(move |conn| transaction(conn, commit, f)).await,
            (None, None) => self.pooled(move |conn| f(&mut Write::one_statement(conn))).await,
        }
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    async fn pooled<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let wait = if self.down.load(Ordering::Relaxed) { POOL_WAIT_WHILE_DOWN } else { POOL_WAIT };
        self.run_within(wait, f).await
    }

    /// Runs `f` with a pooled connection, waiting at most `wait` for one. A
    /// connection whose statement failed as a connection (PostgreSQL
    /// restarted) is thrown away, and the others are checked before their
    /// next use.
    async fn run_within<F, T>(&self, wait: Duration, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (pool, lost) = (self.pool.clone(), self.lost.clone());
        let result = tokio::task::spawn_blocking(move || {
            let mut conn = pool.get_timeout(wait)?;
            let result = f(&mut conn);
            if let Err(e) = &result {
                conn.failed(e, &lost);
            }
            result.map_err(DbError::from)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?;
        match &result {
            Ok(_) => self.down.store(false, Ordering::Relaxed),
            Err(e) if e.is_unavailable() => self.down.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
        result
    }

    /// Answers when the database does (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let ping = self.run_within(PING_WITHIN / 2, |conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ()));
        tokio::time::timeout(PING_WITHIN, ping)
            .await
            .unwrap_or_else(|_| Err(DbError::Unavailable(format!("no answer within {} ms", PING_WITHIN.as_millis()))))
    }
}

#[derive(diesel::QueryableByName)]
struct One {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[allow(dead_code)] // only counted
    one: i32,
}

fn run_migrations(conn: &mut DbConnection) -> Result<(), DbError> {
    let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
    match conn {
        DbConnection::Sqlite(conn) => {
            // A migration that changes a constraint builds its table again; with
            // foreign keys enforced, dropping the old table would delete the rows
            // that reference it (the pragma cannot change inside the migrations'
            // transactions). Off while they run, and every reference checked after.
            conn.batch_execute("PRAGMA foreign_keys = OFF")?;
            let result = conn.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ());
            let broken = diesel::sql_query("SELECT 1 AS one FROM pragma_foreign_key_check LIMIT 1")
                .load::<One>(conn)
                .map(|rows| !rows.is_empty());
            conn.batch_execute("PRAGMA foreign_keys = ON")?;
            result.map_err(migration_error)?;
            if broken? {
                return Err(DbError::Migration("a migration left rows whose references are broken".into()));
            }
        }
        DbConnection::Postgres(conn) => {
            // Several processes may start at once on one database: one migrates, the others wait.
            conn.batch_execute("SELECT pg_advisory_lock(7261504231)")?;
            let result = conn.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ());
            conn.batch_execute("SELECT pg_advisory_unlock(7261504231)")?;
            result.map_err(migration_error)?;
        }
    }
    Ok(())
}

/// The current time as stored: UTC, truncated to microseconds (PostgreSQL's precision).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use diesel::{Connection, RunQueryDsl, connection::SimpleConnection, sqlite::SqliteConnection};
    use diesel_migrations::MigrationHarness;

    use super::{DbConnection, SQLITE_MIGRATIONS, run_migrations};

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    fn count(conn: &mut SqliteConnection, table: &str) -> i64 {
        diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}")).get_result::<Count>(conn).unwrap().n
    }

    /// A migration that builds `handlers` again (to change its CHECK) keeps
    /// every delivery and log that references a handler, and the ids to come.
    #[test]
    fn rebuilding_a_referenced_table_loses_no_row_that_references_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("m.db").display().to_string();
        let mut conn = DbConnection::Sqlite(SqliteConnection::establish(&url).unwrap());
        let DbConnection::Sqlite(sqlite) = &mut conn else { unreachable!() };
        sqlite.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        run_migrations(&mut conn).unwrap();
        let DbConnection::Sqlite(sqlite) = &mut conn else { unreachable!() };
        sqlite
            .batch_execute(
                "INSERT INTO handlers (name, events_id, handler_type, target, status, priority, timeout_ms, secret,
                     created_at, updated_at) VALUES
                   ('a', 'clients.create', 'http', 'http://127.0.0.1:9/a', 'enabled', 0, 1000, 's', '2026-12-01 00:00:00', '2026-12-01 00:00:00'),
                   ('b', 'clients.create', 'http', 'http://127.0.0.1:9/b', 'enabled', 0, 1000, 's', '2026-12-01 00:00:00', '2026-12-01 00:00:00');
                 DELETE FROM handlers WHERE name = 'b';
                 INSERT INTO events (events_id, entity, object_id, payload, received_at)
                   VALUES ('clients.create', 'clients', '1', '{}', '2026-12-01 00:00:00');
                 INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                     max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
                   VALUES (1, 1, 'msg_1', 0, 'clients', '1', 'pending', 0, 3, FALSE, '2026-12-01 00:00:00',
                           '2026-12-01 00:00:00', '2026-12-01 00:00:00', 'http://127.0.0.1:9/a');",
            )
            .unwrap();
        // Back to before the rebuild (and the migrations after it), then forward again with the rows in place.
        let mut reverted: Vec<String> = Vec::new();
        while !reverted.last().is_some_and(|m| m.ends_with("20261207000002")) {
            assert!(reverted.len() < 20, "the rebuild is among the migrations: {reverted:?}");
            reverted.push(sqlite.revert_last_migration(SQLITE_MIGRATIONS).unwrap().to_string());
        }
        run_migrations(&mut conn).unwrap();
        let DbConnection::Sqlite(sqlite) = &mut conn else { unreachable!() };
        assert_eq!((count(sqlite, "handlers"), count(sqlite, "deliveries")), (1, 1), "nothing cascaded");
        sqlite
            .batch_execute(
                "INSERT INTO handlers (name, events_id, handler_type, target, status, priority, timeout_ms, secret,
                     created_at, updated_at) VALUES
                   ('c', 'clients.create', 'http', 'http://127.0.0.1:9/c', 'paused', 0, 1000, 's', '2026-12-01 00:00:00', '2026-12-01 00:00:00')",
            )
            .unwrap();
        let id: i64 = diesel::sql_query("SELECT MAX(id) AS n FROM handlers").get_result::<Count>(sqlite).unwrap().n;
        assert_eq!(id, 3, "a deleted handler's id is never given again");
        // The reference still holds: deleting the handler takes its delivery along.
        sqlite.batch_execute("DELETE FROM handlers WHERE id = 1").unwrap();
        assert_eq!(count(sqlite, "deliveries"), 0, "the foreign key still cascades");
    }
}

//! The database layer: one diesel code base over SQLite and PostgreSQL.
//!
//! [`DbConnection`] is a `MultiConnection` over both backends; [`ConnectionManager`]
//! picks the backend from the URL scheme and reports the real cause of a failed
//! connection; [`Db::run`] is the only door to diesel (it runs on the blocking pool,
//! never on an async worker thread).

pub(crate) mod admins;
pub(crate) mod claims;
pub(crate) mod deliveries;
pub(crate) mod events;
#[cfg(test)]
mod golden;
pub(crate) mod handlers;
pub(crate) mod logs;
mod prepared;
pub(crate) mod record;
mod schema;
pub mod scratch;
pub mod seed;
pub(crate) mod sessions;
pub(crate) mod settings;
mod sqlite_lock;
mod text;
mod writer;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::{NaiveDateTime, SubsecRound, Utc};
/// What every statement answers: a row (or rows) or the database's error.
pub use diesel::QueryResult;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection, connection::SimpleConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The `application_name` of this process's PostgreSQL connections is this
/// followed by [`Db::instance`].
pub const APPLICATION_NAME_PREFIX: &str = "provisiond ";

/// How long to wait for a connection before giving up with the real cause.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

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

/// Where a database URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Sqlite(String),
    Postgres(String),
}

impl Target {
    fn parse(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let url = if url.contains("connect_timeout=") {
                url.to_owned()
            } else {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}connect_timeout={}", CONNECT_TIMEOUT.as_secs())
            };
            return Ok(Target::Postgres(url));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        if path.is_empty() || path.contains(":memory:") || path.contains("://") {
            return Err(DbError::BadUrl(url.to_owned()));
        }
        Ok(Target::Sqlite(path.to_owned()))
    }

    fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }
}

/// An r2d2 manager that picks the backend from the URL scheme and sets the
/// SQLite pragmas on every connection.
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    target: Target,
    /// SQLite: the most bytes the file may grow to (0: no limit).
    sqlite_max_bytes: u64,
    /// Connections found lost so far (see [`Pooled::checked_at_loss`]).
    lost: Arc<AtomicU64>,
    /// This process's name on its leases and, on PostgreSQL, its
    /// connections' `application_name` (see [`Db::instance`]).
    instance: Arc<str>,
}

impl ConnectionManager {
    fn new(url: &str, sqlite_max_bytes: u64) -> Result<Self, DbError> {
        let instance = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Ok(Self {
            target: Target::parse(url)?,
            sqlite_max_bytes,
            lost: Arc::new(AtomicU64::new(0)),
            instance: instance.into(),
        })
    }

    fn open(&self) -> Result<DbConnection, DbError> {
        match &self.target {
            Target::Postgres(url) => {
                let mut conn = PgConnection::establish(url)?;
                // While a connection of this name is open, this process is alive.
                conn.batch_execute(&format!("SET application_name = '{APPLICATION_NAME_PREFIX}{}'", self.instance))?;
                Ok(DbConnection::Postgres(conn))
            }
            Target::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)?;
                // WAL (set once, at connect) with synchronous=NORMAL: a commit is not
                // fsynced, a checkpoint is; nothing committed is lost when the process
                // dies, only the last commits when the machine does. A 1 MiB page cache
                // per connection keeps the process small; the OS caches the rest.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;
                     PRAGMA cache_size = -1024; PRAGMA temp_store = MEMORY;",
                )?;
                if self.sqlite_max_bytes > 0 {
                    // Pages of the default 4 KiB; at least the file's size now.
                    let pages = self.sqlite_max_bytes.div_ceil(4096);
                    conn.batch_execute(&format!("PRAGMA max_page_count = {pages}"))?;
                }
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// A pooled connection, when it last answered, and what its last error said
/// of it.
pub struct Pooled {
    conn: DbConnection,
    answered_at: Instant,
    /// [`ConnectionManager::lost`] when this connection was last checked: a
    /// connection lost since (the server restarted?) makes every other one
    /// suspect until checked.
    checked_at_loss: u64,
    /// The connection itself failed (closed, cannot send): thrown away.
    broken: bool,
    /// A statement failed for some other reason: checked before its next use.
    suspect: bool,
}

impl std::ops::Deref for Pooled {
    type Target = DbConnection;
    fn deref(&self) -> &DbConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut DbConnection {
        &mut self.conn
    }
}

impl Pooled {
    /// Takes note of an error a statement on this connection returned.
    fn failed(&mut self, error: &diesel::result::Error, lost: &AtomicU64) {
        if matches!(self.conn, DbConnection::Postgres(_)) && is_connection_lost(error) {
            self.broken = true;
            lost.fetch_add(1, Ordering::SeqCst);
        } else {
            self.suspect = true;
        }
    }
}

/// A connection used this recently is not checked again before its next use:
/// the check is a round trip to PostgreSQL (and a parse on SQLite) that cost
/// as much as the dispatcher's own statements. One idle for longer (the
/// server may have restarted meanwhile), one whose last statement failed, and
/// every one after another was found lost, are checked first.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = Pooled;
    type Error = DbError;

    fn connect(&self) -> Result<Pooled, DbError> {
        let conn = self.open()?;
        let checked_at_loss = self.lost.load(Ordering::SeqCst);
        Ok(Pooled { conn, answered_at: Instant::now(), checked_at_loss, broken: false, suspect: false })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), DbError> {
        let lost = self.lost.load(Ordering::SeqCst);
        if pooled.suspect || pooled.checked_at_loss != lost || pooled.answered_at.elapsed() >= CHECK_IF_IDLE_FOR {
            pooled.conn.batch_execute("SELECT 1")?;
        }
        pooled.answered_at = Instant::now();
        pooled.checked_at_loss = lost;
        pooled.suspect = false;
        Ok(())
    }

    /// Thrown away on its return to the pool: a connection that failed as a
    /// connection, or left in a transaction (a panic, a failed rollback).
    fn has_broken(&self, pooled: &mut Pooled) -> bool {
        use diesel::connection::{AnsiTransactionManager, TransactionManager};
        let status = match &mut pooled.conn {
            DbConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c),
            DbConnection::Postgres(c) => AnsiTransactionManager::transaction_manager_status_mut(c),
        };
        let in_transaction = !matches!(status.transaction_depth(), Ok(None));
        pooled.broken || in_transaction || std::thread::panicking()
    }
}

/// Whether the error says the connection itself is gone (the server closed
/// it, restarted, or cannot be reached), not that the statement failed.
pub fn is_connection_lost(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        error,
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _)
            | Error::BrokenTransactionManager
    )
}

pub type Pool = r2d2::Pool<ConnectionManager>;

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
    /// writes share one); `None` on PostgreSQL.
    pub fn write_commits(&self) -> Option<u64> {
        self.writer.as_ref().map(writer::Writer::commits)
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let wait = if self.down.load(Ordering::Relaxed) { POOL_WAIT_WHILE_DOWN } else { POOL_WAIT };
        self.run_within(wait, f).await
    }

    /// [`Db::run`], waiting at most `wait` for a connection. A connection
    /// whose statement failed as a connection (PostgreSQL restarted) is
    /// thrown away, and the others are checked before their next use.
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

    /// Like [`Db::run`], for a transaction that writes (the hot writers:
    /// ingestion, claims, recorded attempts). On SQLite it runs on the one
    /// writer connection, committed together with the writes queued beside it,
    /// each rolled back on its own error; the result comes once committed.
    pub async fn run_write<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Other, f).await
    }

    /// [`Db::run_write`] for ingestion, whose client waits for the commit to
    /// be acknowledged: on SQLite it goes ahead of the writes queued for the
    /// server's own bookkeeping (see [`writer`]).
    pub async fn run_ingestion<F, T>(&self, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        self.write_as(writer::Class::Ingestion, f).await
    }

    async fn write_as<F, T>(&self, class: writer::Class, f: F) -> Result<T, DbError>
    where
        F: FnOnce(&mut DbConnection) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        match &self.writer {
            Some(writer) => writer.run(f, class).await,
            None => self.run(f).await,
        }
    }

    /// Answers when the database does (for `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let ping = self.run_within(PING_WITHIN / 2, |conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ()));
        tokio::time::timeout(PING_WITHIN, ping)
            .await
            .unwrap_or_else(|_| Err(DbError::Unavailable(format!("no answer within {} ms", PING_WITHIN.as_millis()))))
    }
}

fn run_migrations(conn: &mut DbConnection) -> Result<(), DbError> {
    let migration_error = |e: Box<dyn std::error::Error + Send + Sync>| DbError::Migration(e.to_string());
    match conn {
        DbConnection::Sqlite(conn) => {
            conn.run_pending_migrations(SQLITE_MIGRATIONS).map_err(migration_error)?;
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

/// Runs `f` in a transaction that writes. On SQLite it begins `IMMEDIATE`,
/// taking the write lock first: a transaction that reads and then writes
/// would otherwise fail with "database is locked" when another wrote in
/// between, instead of waiting its turn. Nested transactions inside `f` are
/// savepoints.
pub fn write_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    transaction(conn, "BEGIN", f)
}

/// A [`write_transaction`] whose commit, on PostgreSQL, returns before the
/// WAL reaches the disk (set in the same round trip as `BEGIN`). For the
/// dispatcher's own bookkeeping (claims, recorded attempts) a commit lost in
/// a crash only means an attempt is made again, which at-least-once delivery
/// allows; ingestion never uses this: an acknowledged event is on disk.
pub fn bookkeeping_transaction<T>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    transaction(conn, "BEGIN; SET LOCAL synchronous_commit = off", f)
}

fn transaction<T>(
    conn: &mut DbConnection,
    postgres_begin: &str,
    f: impl FnOnce(&mut DbConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let nested = match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?,
        DbConnection::Postgres(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth()?,
    };
    if nested.is_some() {
        return conn.transaction(f);
    }
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConnection::Postgres(c) => AnsiTransactionManager::begin_transaction_sql(c, postgres_begin)?,
    }
    match f(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(error) => {
            <DbConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(error)
        }
    }
}

/// The current time as stored: UTC, truncated to microseconds (PostgreSQL's precision).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_database_urls() {
        assert_eq!(Target::parse("sqlite://provisiond.db").unwrap(), Target::Sqlite("provisiond.db".into()));
        assert_eq!(Target::parse("sqlite:///var/lib/p.db").unwrap(), Target::Sqlite("/var/lib/p.db".into()));
        assert_eq!(Target::parse("data.db").unwrap(), Target::Sqlite("data.db".into()));
        assert_eq!(
            Target::parse("postgres://u@h/db").unwrap(),
            Target::Postgres("postgres://u@h/db?connect_timeout=5".into())
        );
        assert_eq!(
            Target::parse("postgresql://u@h/db?sslmode=disable").unwrap(),
            Target::Postgres("postgresql://u@h/db?sslmode=disable&connect_timeout=5".into())
        );
        assert!(Target::parse("sqlite::memory:").is_err());
        assert!(Target::parse("mysql://h/db").is_err());
        assert!(Target::parse("").is_err());
    }
}

//! The database layer: one diesel code base over SQLite and PostgreSQL.
//!
//! [`DbConnection`] is a `MultiConnection` over both backends; [`ConnectionManager`]
//! picks the backend from the URL scheme and reports the real cause of a failed
//! connection; [`Db::run`] is the only door to diesel (it runs on the blocking pool,
//! never on an async worker thread).

pub mod admins;
pub mod claims;
pub mod deliveries;
pub mod events;
pub mod handlers;
pub mod logs;
pub mod prepared;
pub mod schema;
pub mod sessions;
pub mod settings;
mod writer;

use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, SubsecRound, Utc};
use diesel::{Connection, PgConnection, QueryResult, RunQueryDsl, SqliteConnection, connection::SimpleConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long to wait for a connection before giving up with the real cause.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
}

impl DbError {
    /// True when the query found no row.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DbError::Query(diesel::result::Error::NotFound))
    }
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
}

impl ConnectionManager {
    fn new(url: &str) -> Result<Self, DbError> {
        Ok(Self { target: Target::parse(url)? })
    }

    fn open(&self) -> Result<DbConnection, DbError> {
        match &self.target {
            Target::Postgres(url) => Ok(DbConnection::Postgres(PgConnection::establish(url)?)),
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
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// A pooled connection and when it last answered.
pub struct Pooled {
    conn: DbConnection,
    answered_at: Instant,
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

/// A connection used this recently is not checked again before its next use:
/// the check is a round trip to PostgreSQL (and a parse on SQLite) that cost
/// as much as the dispatcher's own statements. One idle for longer (the
/// server may have restarted meanwhile) is checked, as r2d2 does by default.
const CHECK_IF_IDLE_FOR: Duration = Duration::from_secs(1);

impl r2d2::ManageConnection for ConnectionManager {
    type Connection = Pooled;
    type Error = DbError;

    fn connect(&self) -> Result<Pooled, DbError> {
        Ok(Pooled { conn: self.open()?, answered_at: Instant::now() })
    }

    fn is_valid(&self, pooled: &mut Pooled) -> Result<(), DbError> {
        if pooled.answered_at.elapsed() >= CHECK_IF_IDLE_FOR {
            pooled.conn.batch_execute("SELECT 1")?;
        }
        pooled.answered_at = Instant::now();
        Ok(())
    }

    fn has_broken(&self, _conn: &mut Pooled) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<ConnectionManager>;

/// The database handle the app and the dispatcher share.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    backend: Backend,
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
        let manager = ConnectionManager::new(url)?;
        let backend = manager.target.backend();
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
        let pool = r2d2::Pool::builder()
            .max_size(pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(manager)?;
        Ok(Self { pool, backend, writer })
    }

    pub fn backend(&self) -> Backend {
        self.backend
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
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn).map_err(DbError::from)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
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
        self.run(|conn| diesel::sql_query("SELECT 1").execute(conn).map(|_| ())).await
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

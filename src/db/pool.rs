//! Connections: the URL read as a backend, and the pool's connections checked
//! before use and thrown away once broken.

use std::path::Path;
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::{Connection, PgConnection, SqliteConnection, connection::SimpleConnection};

use super::{APPLICATION_NAME_PREFIX, Backend, DbError};

/// How long to wait for a connection before giving up with the real cause.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub(super) enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Where a database URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Sqlite(String),
    Postgres(String),
}

impl Target {
    pub(super) fn parse(url: &str) -> Result<Self, DbError> {
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
            return Err(DbError::BadUrl(crate::diagnostics::redact_url(url)));
        }
        Ok(Target::Sqlite(path.to_owned()))
    }

    pub(super) fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            Target::Postgres(_) => Backend::Postgres,
        }
    }
}

/// An r2d2 manager that picks the backend from the URL scheme and sets the
/// SQLite pragmas on every connection.
#[derive(Debug, Clone)]
pub(super) struct ConnectionManager {
    pub(super) target: Target,
    /// SQLite: the most bytes the file may grow to (0: no limit).
    sqlite_max_bytes: u64,
    /// Connections found lost so far (see [`Pooled::checked_at_loss`]).
    pub(super) lost: Arc<AtomicU64>,
    /// This process's name on its leases and, on PostgreSQL, its
    /// connections' `application_name` (see [`Db::instance`]).
    pub(super) instance: Arc<str>,
}

/// Creates a new SQLite file readable and writable by this user only
/// (`0600`); SQLite gives its WAL and shared-memory files the same mode. An
/// existing file is left as it is; a file that cannot be made (a missing
/// directory…) is left to the connection to report.
fn create_private(path: &Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
}

impl ConnectionManager {
    pub(super) fn new(url: &str, sqlite_max_bytes: u64) -> Result<Self, DbError> {
        let instance = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let target = Target::parse(url)?;
        if let Target::Sqlite(path) = &target {
            create_private(Path::new(path));
        }
        Ok(Self { target, sqlite_max_bytes, lost: Arc::new(AtomicU64::new(0)), instance: instance.into() })
    }

    pub(super) fn open(&self) -> Result<DbConnection, DbError> {
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
pub(super) struct Pooled {
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
    pub(super) fn failed(&mut self, error: &diesel::result::Error, lost: &AtomicU64) {
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
pub(super) fn is_connection_lost(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        error,
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _)
            | Error::BrokenTransactionManager
    )
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

//! Reads and writes, distinct in the type. A model function that only reads
//! takes a [`Read`]; one that writes takes a [`Write`], which only
//! [`Db::write`](super::Db::write) and its siblings hand out, inside a
//! transaction on both backends. A `Write` reads too (it derefs to `Read`);
//! a `Read` cannot write, so a write cannot end up outside a transaction or,
//! on SQLite, outside the one writer.

use diesel::{
    Connection,
    connection::{AnsiTransactionManager, TransactionManager},
};

use super::{DbConnection, QueryResult};

/// A connection lent for reading.
pub struct Read<'c>(&'c mut DbConnection);

/// A connection inside a transaction that writes.
pub struct Write<'c>(Read<'c>);

impl<'c> Read<'c> {
    pub(super) fn new(conn: &'c mut DbConnection) -> Self {
        Self(conn)
    }

    /// The diesel connection, for the statements of `db`.
    pub(super) fn db(&mut self) -> &mut DbConnection {
        self.0
    }
}

impl<'c> std::ops::Deref for Write<'c> {
    type Target = Read<'c>;
    fn deref(&self) -> &Read<'c> {
        &self.0
    }
}

impl<'c> std::ops::DerefMut for Write<'c> {
    fn deref_mut(&mut self) -> &mut Read<'c> {
        &mut self.0
    }
}

impl<'c> Write<'c> {
    /// A write of one statement on PostgreSQL, outside `BEGIN`/`COMMIT`:
    /// PostgreSQL runs a statement as a transaction of its own, atomic, and
    /// the two round trips are saved (see [`super::Db::bookkeep_one`]).
    pub(super) fn one_statement(conn: &'c mut DbConnection) -> Self {
        Write(Read(conn))
    }

    /// Runs `f` as one unit inside the transaction (a savepoint): an error
    /// of `f` undoes `f`'s writes only, and the transaction goes on (on
    /// PostgreSQL a failed statement would otherwise abort all of it).
    pub(super) fn savepoint<T>(&mut self, f: impl FnOnce(&mut Write<'_>) -> QueryResult<T>) -> QueryResult<T> {
        self.db().transaction(|conn| f(&mut Write(Read(conn))))
    }
}

/// How a write's commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Commit {
    /// Before the commit returns: what a client is told is stored (an
    /// event, a handler) stays stored.
    Durable,
    /// On PostgreSQL, the commit returns before the WAL reaches the disk.
    /// For the dispatcher's own bookkeeping (claims, recorded attempts): a
    /// commit lost in a crash only means an attempt is made again, which
    /// at-least-once delivery allows. On SQLite the same as `Durable` (the
    /// writer's commits are not fsynced; see `pool`).
    Relaxed,
}

/// Runs `f` in a transaction that writes. On SQLite it begins `IMMEDIATE`,
/// taking the write lock first: a transaction that reads and then writes
/// would otherwise fail with "database is locked" when another wrote in
/// between, instead of waiting its turn. Inside a transaction already, `f`
/// is a savepoint of it.
pub(super) fn transaction<T>(
    conn: &mut DbConnection,
    commit: Commit,
    f: impl FnOnce(&mut Write<'_>) -> QueryResult<T>,
) -> QueryResult<T> {
    if depth(conn)?.is_some() {
        return conn.transaction(|conn| f(&mut Write(Read(conn))));
    }
    begin(conn, commit)?;
    match f(&mut Write(Read(&mut *conn))) {
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

/// Begins a transaction (the `SET LOCAL` of a relaxed commit in the same
/// round trip as `BEGIN`).
pub(super) fn begin(conn: &mut DbConnection, commit: Commit) -> QueryResult<()> {
    match (conn, commit) {
        (DbConnection::Sqlite(c), _) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        (DbConnection::Postgres(c), Commit::Durable) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN"),
        (DbConnection::Postgres(c), Commit::Relaxed) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN; SET LOCAL synchronous_commit = off")
        }
    }
}

/// How deep in transactions the connection is (`None`: in none).
pub(super) fn depth(conn: &mut DbConnection) -> QueryResult<Option<std::num::NonZeroU32>> {
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        DbConnection::Postgres(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::Error;

    use super::super::{Db, settings};

    /// A fresh database of each backend (PostgreSQL skipped, with a note,
    /// where it is not reachable and not required), with the guard that
    /// removes it.
    fn databases() -> Vec<(Db, Box<dyn std::any::Any>)> {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = Db::connect(&format!("sqlite://{}", dir.path().join("a.db").display()), 2).unwrap();
        let mut all: Vec<(Db, Box<dyn std::any::Any>)> = vec![(sqlite, Box::new(dir))];
        let configured = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty());
        let required = configured.is_some() || std::env::var("PG_REQUIRED").is_ok_and(|v| v == "1");
        let admin = configured.unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("provisiond_access_{}", std::process::id());
        let _ = super::super::scratch::drop_database(&admin, &name);
        match super::super::scratch::create_database(&admin, &name) {
            Ok(()) => {
                let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
                struct Drop(String, String);
                impl std::ops::Drop for Drop {
                    fn drop(&mut self) {
                        let _ = super::super::scratch::drop_database(&self.0, &self.1);
                    }
                }
                let guard = Drop(admin.clone(), name);
                all.push((Db::connect(&url, 2).unwrap(), Box::new(guard)));
            }
            Err(e) if required => panic!("PostgreSQL required but unreachable at {admin}: {e}"),
            Err(e) => eprintln!("skipping PostgreSQL: {e}"),
        }
        all
    }

    async fn stored(db: &Db, name: &'static str) -> Option<String> {
        db.read(move |conn| settings::get(conn, name)).await.unwrap()
    }

    /// A write is a transaction on both backends: its error undoes every
    /// statement it ran, and a savepoint's error undoes the savepoint's
    /// statements only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_is_all_or_nothing_on_both_backends() {
        for (db, _guard) in databases() {
            let failed = db
                .write(|conn| {
                    settings::insert_if_absent(conn, "first", "1")?;
                    settings::insert_if_absent(conn, "second", "2")?;
                    Err::<(), _>(Error::RollbackTransaction)
                })
                .await;
            assert!(failed.is_err());
            assert_eq!(stored(&db, "first").await, None, "{:?}: the first statement undone", db.backend());
            assert_eq!(stored(&db, "second").await, None);

            db.write(|conn| {
                settings::insert_if_absent(conn, "kept", "1")?;
                let inner = conn.savepoint(|conn| {
                    settings::insert_if_absent(conn, "undone", "1")?;
                    Err::<(), _>(Error::RollbackTransaction)
                });
                assert!(inner.is_err());
                settings::insert_if_absent(conn, "after", "1")
            })
            .await
            .unwrap();
            assert_eq!(stored(&db, "kept").await.as_deref(), Some("1"), "{:?}", db.backend());
            assert_eq!(stored(&db, "undone").await, None, "{:?}: the savepoint undone alone", db.backend());
            assert_eq!(stored(&db, "after").await.as_deref(), Some("1"), "{:?}: and the write went on", db.backend());
        }
    }
}

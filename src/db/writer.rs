//! SQLite's one writer: the hot write transactions of this process (ingestion,
//! claims, recorded attempts) run on one connection, on a thread of its own.
//!
//! SQLite takes one writer at a time anyway. Keeping it on one connection
//! keeps that connection's page cache (a connection drops its whole cache when
//! it finds the file changed by another one, and re-reads every page it
//! touches); and the jobs that queued up while a transaction ran commit
//! together in the next one, each in a savepoint of its own, so pages that
//! several jobs touch (the same index leaves, the same table page) are
//! written to the WAL once. A job's result is handed back only after the
//! commit: an event is acknowledged, a claim attempted, once on disk.
//!
//! Ingestion goes first: a client waits on it for its acknowledgement. While
//! ingestion jobs are queued, a transaction takes only those, and the other
//! jobs (claims, recorded attempts, cancellations) wait, at most
//! [`OTHERS_WAIT_AT_MOST`], so that a steady stream of events cannot stall
//! delivery; under load this acknowledges and delivers more events a second
//! than arrival order does (the figures: docs/performance-history.md).
//! Every other write (administrative changes, retries by hand, pruning)
//! queues with the bookkeeping: on SQLite no write runs anywhere else.

use std::{
    collections::VecDeque,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use diesel::{
    Connection, QueryResult,
    connection::{SimpleConnection, TransactionManager},
};
use tokio::sync::oneshot;

use super::{
    DbConnection, DbError, Write,
    access::{Commit, begin, depth, transaction},
};

/// The most jobs committed together.
const JOBS_PER_COMMIT: usize = 64;

/// How long a job other than ingestion waits, at most, while ingestion jobs
/// keep coming: then it joins the next transaction with them.
const OTHERS_WAIT_AT_MOST: Duration = Duration::from_millis(2);

/// What a job leaves to do once its transaction has ended: hand its result
/// (or the commit's error) to whoever waits for it.
type Finish = Box<dyn FnOnce(Result<(), &str>) + Send>;
type Work = Box<dyn FnOnce(&mut DbConnection) -> Finish + Send>;

/// Which queue a job waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Ingestion: a client waits for the commit; first.
    Ingestion,
    /// Everything else.
    Other,
}

struct Job {
    class: Class,
    queued_at: Instant,
    work: Work,
}

/// Opens a new connection (after a panic left the old one in an unknown state).
pub(super) type Reopen = Box<dyn Fn() -> Result<DbConnection, DbError> + Send>;

/// A handle on the writer thread; cheap to clone. The thread ends when the
/// last handle is dropped.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
    /// Transactions committed (or rolled back), and the jobs run in them,
    /// for `/metrics`.
    counts: Arc<Counts>,
}

/// What the writer has done so far.
#[derive(Default)]
struct Counts {
    commits: AtomicU64,
    jobs: AtomicU64,
}

impl Writer {
    pub(super) fn start(mut conn: DbConnection, reopen: Reopen) -> Result<Self, DbError> {
        let checkpoints = Checkpoints::start(reopen()?)?;
        set_up(&mut conn)?;
        let (jobs, queue) = mpsc::channel();
        let counts = Arc::new(Counts::default());
        let counted = counts.clone();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || run(conn, &reopen, queue, checkpoints, &counted))
            .map_err(|e| DbError::Task(format!("cannot start the database writer: {e}")))?;
        Ok(Self { jobs, counts })
    }

    /// Transactions the writer has run so far, and the jobs in them.
    pub(super) fn counts(&self) -> super::WriterCounts {
        let read = |n: &AtomicU64| n.load(Ordering::Relaxed);
        super::WriterCounts { commits: read(&self.counts.commits), jobs: read(&self.counts.jobs) }
    }

    /// Runs `f` in a transaction of the writer (a savepoint of it, when other
    /// jobs share the commit) and returns its result once committed. An error
    /// of `f` rolls back `f`'s writes only.
    pub(super) async fn run<F, T>(&self, f: F, class: Class) -> Result<T, DbError>
    where
        F: FnOnce(&mut Write<'_>) -> QueryResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let work: Work = Box::new(move |conn| {
            let result = transaction(conn, Commit::Durable, f);
            Box::new(move |committed: Result<(), &str>| {
                let answer = match (result, committed) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(e)) => Err(DbError::Commit(e.to_owned())),
                    (Err(e), _) => Err(DbError::Query(e)),
                };
                let _ = reply.send(answer);
            })
        });
        self.jobs.send(Job { class, queued_at: Instant::now(), work }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> DbError {
    DbError::Task("a database write panicked".into())
}

fn run(mut conn: DbConnection, reopen: &Reopen, queue: mpsc::Receiver<Job>, checkpoints: Checkpoints, counts: &Counts) {
    let mut waiting = Waiting::default();
    while let Some(batch) = waiting.next_transaction(&queue) {
        counts.commits.fetch_add(1, Ordering::Relaxed);
        counts.jobs.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let rest = match commit_together(&mut conn, batch) {
            Ok(()) => Vec::new(),
            Err(Panicked { rest }) => rest,
        };
        // No transaction may outlive its batch, whatever went wrong in it.
        conn = recover(conn, reopen);
        // The jobs after one that panicked, each on its own.
        for job in rest {
            let _ = commit_together(&mut conn, vec![job]);
            conn = recover(conn, reopen);
        }
        checkpoints.wrote();
    }
}

/// The jobs taken off the channel, not yet run, by class.
#[derive(Default)]
struct Waiting {
    ingestion: VecDeque<Job>,
    others: VecDeque<Job>,
}

impl Waiting {
    /// The jobs of the next transaction, once there are any; `None` when
    /// every handle is gone and nothing waits. Ingestion jobs first, and
    /// only those while the others have waited less than
    /// [`OTHERS_WAIT_AT_MOST`]; in the order they came within each class.
    fn next_transaction(&mut self, queue: &mpsc::Receiver<Job>) -> Option<Vec<Work>> {
        if self.ingestion.is_empty() && self.others.is_empty() {
            let job = queue.recv().ok()?;
            self.add(job);
        }
        // Bounded, so that a flood of jobs still ends the drain.
        for _ in 0..4 * JOBS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => self.add(job),
                Err(_) => break,
            }
        }
        let n = self.ingestion.len().min(JOBS_PER_COMMIT);
        let mut batch: Vec<Work> = self.ingestion.drain(..n).map(|j| j.work).collect();
        let overdue = self.others.front().is_some_and(|j| j.queued_at.elapsed() >= OTHERS_WAIT_AT_MOST);
        if batch.is_empty() || overdue {
            let n = self.others.len().min(JOBS_PER_COMMIT - batch.len());
            batch.extend(self.others.drain(..n).map(|j| j.work));
        }
        Some(batch)
    }

    fn add(&mut self, job: Job) {
        match job.class {
            Class::Ingestion => self.ingestion.push_back(job),
            Class::Other => self.others.push_back(job),
        }
    }
}

/// A job panicked: its reply was dropped with it (its caller is told), the
/// jobs before it in the transaction were told it was rolled back.
struct Panicked {
    rest: Vec<Work>,
}

/// Runs the jobs in one transaction and commits it. When it cannot begin
/// (the file is locked by someone else for longer than the busy timeout),
/// each job runs in a transaction of its own and meets the error itself.
fn commit_together(conn: &mut DbConnection, batch: Vec<Work>) -> Result<(), Panicked> {
    let together = batch.len() > 1 && begin(conn, Commit::Durable).is_ok();
    let mut finishers = Vec::with_capacity(batch.len());
    let mut jobs = batch.into_iter();
    while let Some(job) = jobs.next() {
        match catch_unwind(AssertUnwindSafe(|| job(conn))) {
            Ok(finish) if together => finishers.push(finish),
            Ok(finish) => finish(Ok(())),
            Err(_) => {
                tracing::error!("a database write panicked; its transaction is rolled back");
                for finish in finishers {
                    finish(Err("rolled back: another write of the same transaction panicked"));
                }
                return Err(Panicked { rest: jobs.collect() });
            }
        }
    }
    if together {
        let committed = TransactionManagerOf::commit_transaction(conn).map_err(|e| {
            let _ = TransactionManagerOf::rollback_transaction(conn);
            crate::diagnostics::cause_chain(&e)
        });
        for finish in finishers {
            finish(committed.as_ref().map(|_| ()).map_err(String::as_str));
        }
    }
    Ok(())
}

type TransactionManagerOf = <DbConnection as Connection>::TransactionManager;

/// After a batch: the connection, with any transaction left open (a job
/// panicked, a rollback failed) rolled back, or a new one if its transaction
/// state is beyond repair. No SQL when all is well.
fn recover(mut conn: DbConnection, reopen: &Reopen) -> DbConnection {
    for _ in 0..8 {
        match depth(&mut conn) {
            Ok(None) => return conn,
            Ok(Some(_)) if TransactionManagerOf::rollback_transaction(&mut conn).is_ok() => {}
            _ => break,
        }
    }
    loop {
        match reopen().and_then(|mut new| set_up(&mut new).map(|()| new)) {
            Ok(new) => return new,
            Err(e) => {
                tracing::error!(error = %crate::diagnostics::cause_chain(&e), "cannot reopen the database writer; retrying");
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// The writer's own settings: checkpoints are left to the checkpointer; this
/// only bounds the WAL should it fall behind.
fn set_up(conn: &mut DbConnection) -> Result<(), DbError> {
    conn.batch_execute(&format!("PRAGMA wal_autocheckpoint = {WAL_PAGES_AT_MOST}"))?;
    Ok(())
}

/// WAL pages after which the writer checkpoints itself (SQLite's default is
/// 1,000); the checkpointer normally has done it long before.
const WAL_PAGES_AT_MOST: u32 = 16_000;

/// How often, at most, the checkpointer copies the WAL back while writes go on.
/// Often, so that each copy is small: once one has copied everything, the
/// writer's next commit starts the WAL over and SQLite syncs it then, on the
/// writer's thread, flushing what the last copy left — the longer the period,
/// the longer that sync holds up a commit (paced p99 grows with it; the
/// figures: docs/performance-history.md), at the same throughput under load.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Copies the WAL back into the database file on a thread and connection of
/// its own (a passive checkpoint: it never waits for, nor blocks, the
/// writer), so the writer's commits do not stop for the copy and its fsyncs.
/// It sleeps while nothing is written, and ends with the writer.
struct Checkpoints {
    wrote: mpsc::SyncSender<()>,
}

impl Checkpoints {
    fn start(mut conn: DbConnection) -> Result<Self, DbError> {
        let (wrote, writes) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let mut failing = false;
                // Wakes at a write; the writes of the next moment join it.
                while writes.recv().is_ok() {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    while writes.try_recv().is_ok() {}
                    // Said once per streak of failures, not a hundred times a second.
                    match conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
                        Ok(()) if failing => {
                            tracing::info!("the WAL is checkpointed again");
                            failing = false;
                        }
                        Ok(()) => {}
                        Err(e) if !failing => {
                            tracing::warn!(error = %crate::diagnostics::cause_chain(&e), "cannot checkpoint the WAL; the writer will, past {WAL_PAGES_AT_MOST} pages");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                }
            })
            .map_err(|e| DbError::Task(format!("cannot start the checkpointer: {e}")))?;
        Ok(Self { wrote })
    }

    /// The writer wrote: a checkpoint is due shortly (one is already, when the
    /// signal is pending).
    fn wrote(&self) {
        let _ = self.wrote.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use diesel::{RunQueryDsl, sql_types::BigInt};
    use futures_util::future::join_all;

    use super::super::{Db, DbError, Write};

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        x: i64,
    }

    async fn scratch() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("w.db").display()), 2).unwrap();
        db.write(|conn| diesel::sql_query("CREATE TABLE scratch (x BIGINT PRIMARY KEY)").execute(conn.db()))
            .await
            .unwrap();
        (dir, db)
    }

    async fn stored(db: &Db) -> Vec<i64> {
        let rows = db.read(|conn| diesel::sql_query("SELECT x FROM scratch ORDER BY x").load::<Row>(conn.db())).await;
        rows.unwrap().into_iter().map(|r| r.x).collect()
    }

    fn insert(conn: &mut Write<'_>, x: i64) -> diesel::QueryResult<usize> {
        diesel::sql_query("INSERT INTO scratch (x) VALUES ($1)").bind::<BigInt, _>(x).execute(conn.db())
    }

    /// Writes `0..n` at once through the writer; their answers, in order.
    async fn write_concurrently(
        db: &Db,
        n: i64,
        write: fn(&mut Write<'_>, i64) -> diesel::QueryResult<usize>,
    ) -> Vec<Result<usize, DbError>> {
        join_all((0..n).map(|i| db.bookkeep(move |conn| write(conn, i)))).await
    }

    /// Writes queued together share a commit; one that fails is rolled back
    /// alone (its first row too), and every other is stored and answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_rolls_back_alone() {
        let (_dir, db) = scratch().await;
        let answers = write_concurrently(&db, 40, |conn, i| {
            insert(conn, i)?;
            // Write 17 inserts a row, then fails on a duplicate key.
            if i == 17 { insert(conn, 1000).and_then(|_| insert(conn, 1000)) } else { Ok(1) }
        })
        .await;
        for (i, answer) in answers.iter().enumerate() {
            match (i, answer) {
                (17, Err(DbError::Query(_))) => {}
                (17, other) => panic!("write 17 should fail on its duplicate key, got {other:?}"),
                (_, Ok(1)) => {}
                (i, other) => panic!("write {i} should be stored, got {other:?}"),
            }
        }
        let expected: Vec<i64> = (0..40).filter(|i| *i != 17).collect();
        assert_eq!(stored(&db).await, expected);
    }

    /// A write that panics fails alone with a clear error; a write is
    /// answered Ok only if it is stored, and the writer goes on afterwards.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_does_not_stop_the_writer() {
        let (_dir, db) = scratch().await;
        let answers = write_concurrently(&db, 20, |conn, i| {
            assert!(i != 9, "a bug in write 9");
            insert(conn, i)
        })
        .await;
        let rows = stored(&db).await;
        assert!(matches!(&answers[9], Err(DbError::Task(text)) if text.contains("panicked")), "{:?}", answers[9]);
        assert!(!rows.contains(&9));
        for (i, answer) in answers.iter().enumerate().filter(|(i, _)| *i != 9) {
            let i = i as i64;
            match answer {
                Ok(1) => assert!(rows.contains(&i), "write {i} was answered Ok but is not stored"),
                Err(DbError::Commit(_)) => assert!(!rows.contains(&i), "write {i} failed but is stored"),
                other => panic!("write {i}: {other:?}"),
            }
        }
        db.bookkeep(|conn| insert(conn, 100)).await.unwrap();
        assert!(stored(&db).await.contains(&100));
    }

    /// An event waits for no claim or record queued before it: ingestion
    /// queued behind other writes runs first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ingestion_goes_ahead_of_other_writes() {
        let (_dir, db) = scratch().await;
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let ran = |order: &std::sync::Arc<std::sync::Mutex<Vec<&'static str>>>, name| {
            let order = order.clone();
            move |_: &mut Write<'_>| {
                order.lock().unwrap().push(name);
                Ok(())
            }
        };
        // Holds the writer (it says when it has it) until released, while
        // the others queue up behind it: a write is queued at its first poll.
        let (has_writer, holds) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = db.bookkeep({
            let order = order.clone();
            move |_| {
                has_writer.send(()).unwrap();
                released.recv().unwrap();
                order.lock().unwrap().push("busy");
                Ok(())
            }
        });
        let mut busy = std::pin::pin!(busy);
        assert!(poll_once(busy.as_mut()).is_pending());
        tokio::task::spawn_blocking(move || holds.recv().unwrap()).await.unwrap();
        let mut claim = std::pin::pin!(db.bookkeep(ran(&order, "claim")));
        assert!(poll_once(claim.as_mut()).is_pending(), "queued");
        let mut event = std::pin::pin!(db.ingest(ran(&order, "event")));
        assert!(poll_once(event.as_mut()).is_pending(), "queued after the claim");
        release.send(()).unwrap();
        let (busy, claim, event) = tokio::join!(busy, claim, event);
        busy.unwrap();
        claim.unwrap();
        event.unwrap();
        assert_eq!(*order.lock().unwrap(), ["busy", "event", "claim"]);
    }

    /// Polls a future once (it then has done what it does before its first wait).
    fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    /// A job that does nothing, queued `waited` ago; `None`: never overdue,
    /// however slow the machine running the test.
    fn job(class: super::Class, waited: Option<std::time::Duration>) -> super::Job {
        let now = std::time::Instant::now();
        let queued_at = match waited {
            Some(waited) => now.checked_sub(waited).unwrap(),
            None => now + std::time::Duration::from_secs(3600),
        };
        super::Job { class, queued_at, work: Box::new(|_| Box::new(|_| {})) }
    }

    /// Other writes wait while ingestion keeps coming, but not for long: past
    /// the bound they join the next transaction.
    #[test]
    fn other_writes_wait_behind_ingestion_at_most_a_moment() {
        use super::Class::{Ingestion, Other};
        let (tx, rx) = std::sync::mpsc::channel();
        let mut waiting = super::Waiting::default();
        let mut next = |jobs: Vec<super::Job>| {
            for job in jobs {
                tx.send(job).unwrap();
            }
            waiting.next_transaction(&rx).map(|batch| batch.len())
        };
        assert_eq!(
            next(vec![job(Other, None), job(Ingestion, None), job(Ingestion, None)]),
            Some(2),
            "ingestion alone"
        );
        assert_eq!(next(vec![]), Some(1), "then the other write");
        assert_eq!(next(vec![job(Other, None), job(Ingestion, None)]), Some(1));
        assert_eq!(next(vec![job(Ingestion, None)]), Some(1), "the other write has waited less than the bound");
        assert_eq!(next(vec![]), Some(1), "no ingestion waits: the other write");
        let overdue = Some(super::OTHERS_WAIT_AT_MOST);
        let jobs = vec![job(Other, overdue), job(Other, None), job(Ingestion, None)];
        assert_eq!(next(jobs), Some(3), "the first other write is past the bound: the others join the ingestion");
    }

    /// The WAL is copied back into the database file in the background,
    /// long before the writer's own bound.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_is_checkpointed_in_the_background() {
        let (dir, db) = scratch().await;
        let file = dir.path().join("w.db");
        let size = || std::fs::metadata(&file).unwrap().len();
        let before = size();
        db.bookkeep(|conn| {
            let rows = "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000)
                        INSERT INTO scratch (x) SELECT x FROM n";
            diesel::sql_query(rows).execute(conn.db())
        })
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while size() <= before {
            assert!(std::time::Instant::now() < deadline, "the database file did not grow past {before} bytes");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(stored(&db).await.len(), 20000);
    }
}

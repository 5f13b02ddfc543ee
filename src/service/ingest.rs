//! Ingestion with group commit: events posted at about the same time are
//! written in one transaction, and each request is answered once that
//! transaction has committed (DESIGN §4.2: acknowledged = committed).
//!
//! A writer task takes whatever has queued up while the previous transaction
//! ran — one event when the server is quiet (no added wait), hundreds under
//! load — so a commit's cost is shared. An event with an `Idempotency-Key` is
//! written on its own, since its key decides whether it is written at all.

use tokio::sync::{mpsc, oneshot};

use crate::{
    db::{
        Db, DbError,
        events::{Answer, Event, IdempotencyKey, Ingested},
    },
    diagnostics::cause_chain,
    dispatcher::Dispatcher,
    domain::envelope::ValidEvent,
};

/// The most events in one transaction.
const BATCH: usize = 256;

struct Job {
    event: ValidEvent,
    key: Option<IdempotencyKey>,
    reply: oneshot::Sender<Result<Ingested, DbError>>,
}

/// A handle on the writer; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    tx: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts the writer on the current tokio runtime.
    pub fn start(db: Db, dispatcher: Dispatcher, max_attempts: i32) -> Self {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        tokio::spawn(write_loop(db, dispatcher, max_attempts, rx));
        Self { tx }
    }

    /// Stores the event and its deliveries; returns once committed.
    pub async fn ingest(&self, event: ValidEvent, key: Option<IdempotencyKey>) -> Result<Ingested, DbError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Job { event, key, reply }).await.map_err(|_| DbError::Task("ingestion has stopped".into()))?;
        answer.await.map_err(|_| DbError::Task("ingestion has stopped".into()))?
    }
}

async fn write_loop(db: Db, dispatcher: Dispatcher, max_attempts: i32, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut jobs, BATCH).await > 0 {
        let (keyed, plain): (Vec<Job>, Vec<Job>) = jobs.drain(..).partition(|j| j.key.is_some());
        let mut created = write_batch(&db, &dispatcher, max_attempts, plain).await;
        for job in keyed {
            created += write_one(&db, max_attempts, job).await;
        }
        if created > 0 {
            dispatcher.wake();
        }
    }
}

/// Writes events in one transaction and answers each; how many deliveries
/// were created. When the batch fails because of its content (one event the
/// database refuses), each event is written on its own, so that only that
/// one's request fails; when the database is unavailable, every request is
/// told so (503) at once.
async fn write_batch(db: &Db, dispatcher: &Dispatcher, max_attempts: i32, plain: Vec<Job>) -> i64 {
    if plain.is_empty() {
        return 0;
    }
    let events: Vec<ValidEvent> = plain.iter().map(|j| j.event.clone()).collect();
    let result = db.ingest_one(move |conn| Event::ingest_batch(conn, &events, max_attempts)).await;
    dispatcher.metrics().ingest_commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    match result {
        Ok(answers) => {
            let mut created = 0;
            for (job, answer) in plain.into_iter().zip(answers) {
                created += answer.deliveries;
                let _ = job.reply.send(Ok(answer));
            }
            created
        }
        Err(e) if e.is_unavailable() || plain.len() == 1 => {
            let text = cause_chain(&e);
            tracing::error!(error = %text, events = plain.len(), "cannot store events");
            let unavailable = e.is_unavailable();
            let mut first = Some(e);
            for job in plain {
                let error = match first.take() {
                    Some(e) => e,
                    None if unavailable => DbError::Unavailable(text.clone()),
                    None => DbError::Task(text.clone()),
                };
                let _ = job.reply.send(Err(error));
            }
            0
        }
        Err(e) => {
            tracing::warn!(error = %cause_chain(&e), events = plain.len(), "cannot store a batch of events; storing them one by one");
            let mut created = 0;
            for job in plain {
                created += Box::pin(write_batch(db, dispatcher, max_attempts, vec![job])).await;
            }
            created
        }
    }
}

/// An event with an `Idempotency-Key`, in a transaction of its own.
async fn write_one(db: &Db, max_attempts: i32, job: Job) -> i64 {
    let (event, key) = (job.event, job.key);
    let result = db.ingest(move |conn| Event::ingest(conn, &event, key.as_ref(), max_attempts)).await;
    let created = match &result {
        Ok(answer) if answer.answer == Answer::Stored => answer.deliveries,
        _ => 0,
    };
    let _ = job.reply.send(result);
    created
}

//! Bulk retries and replays (DESIGN §8.5): counted first (a dry run), then
//! started as a job in the database and run in the background a batch at a
//! time — surviving a restart, shared by the instances of one PostgreSQL
//! database, cancellable. Each start and cancellation is audited.

use std::time::Duration;

use serde_json::json;

use super::{
    AppState, Missing, Refusal,
    access::{Action, Actor},
    audit,
    filters::{DeliveryQuery, EventQuery},
};
use crate::{
    db::{
        DbError,
        handlers::Handler,
        jobs::{self, BulkJob, JobKind, NewJob},
    },
    diagnostics::cause_chain,
    domain::{FieldErrors, HandlerStatus},
};

/// Rows retried or replayed in one transaction.
const BATCH: i64 = 200;
/// The pause between two batches, so that ingestion and the dispatcher get
/// the database in between.
const PAUSE: Duration = Duration::from_millis(10);
/// How often an idle runner looks for jobs started by another instance.
const POLL: Duration = Duration::from_secs(2);

/// What a bulk retry or replay would do, or did.
#[derive(Debug, Clone)]
pub struct BulkStart {
    /// How many deliveries it retries, or events it replays.
    pub matched: i64,
    /// Of a retry's, those that succeeded already (they are sent again).
    pub succeeded: i64,
    /// The job, when it was started (not a dry run).
    pub job: Option<BulkJob>,
}

fn invalid(field: &str, message: impl Into<String>) -> Refusal {
    let mut errors = FieldErrors::default();
    errors.add(field, message);
    Refusal::Invalid(errors)
}

impl AppState {
    /// Bulk retry: every delivery `query` matches that is finished gets one
    /// more attempt (those waiting for a retry are made due now), in
    /// per-object order, outside the priority chain; only deliveries of
    /// enabled handlers. With `dry_run`, only counts.
    pub async fn bulk_retry(&self, actor: &Actor, query: DeliveryQuery, dry_run: bool) -> Result<BulkStart, Refusal> {
        actor.must(Action::Retry)?;
        let (filter, _) = query.parse().map_err(Refusal::Invalid)?;
        let count = self.db.read(move |conn| jobs::count_retryable(conn, &filter)).await?;
        let (matched, succeeded) = (count.matched, count.succeeded);
        if dry_run {
            return Ok(BulkStart { matched, succeeded, job: None });
        }
        let new = NewJob {
            kind: JobKind::Retry,
            filter: serde_json::to_string(&DeliveryQuery { before: String::new(), ..query })
                .map_err(|e| Refusal::Internal(e.to_string()))?,
            handler_id: None,
            matched,
            upto: count.upto,
            created_by: actor.audit_name(),
        };
        let job = self.start_job(actor, new, json!({"matched": matched, "succeeded": succeeded})).await?;
        Ok(BulkStart { matched, succeeded, job: Some(job) })
    }

    /// Replay: a new delivery to handler `handler_id` of every event of its
    /// event type that `query` matches, oldest first. The handler must be
    /// enabled. With `dry_run`, only counts.
    pub async fn replay(
        &self,
        actor: &Actor,
        handler_id: i64,
        query: EventQuery,
        dry_run: bool,
    ) -> Result<BulkStart, Refusal> {
        actor.must(Action::Retry)?;
        let (filter, _) = query.parse().map_err(Refusal::Invalid)?;
        let handler = self
            .db
            .read(move |conn| Handler::find(conn, handler_id))
            .await
            .map_err(Refusal::or_missing(Missing::Handler(handler_id)))?;
        if filter.events_id.as_ref().is_some_and(|e| *e != handler.events_id) {
            return Err(invalid(
                "event",
                format!("handler {} receives {}, not this event", handler.id, handler.events_id),
            ));
        }
        if handler.status != HandlerStatus::Enabled {
            return Err(Refusal::Conflict(format!(
                "handler {} is {}: enable it before replaying events to it",
                handler.id, handler.status
            )));
        }
        let events_id = handler.events_id.clone();
        let (matched, upto) = self.db.read(move |conn| jobs::count_replayable(conn, &filter, &events_id)).await?;
        if dry_run {
            return Ok(BulkStart { matched, succeeded: 0, job: None });
        }
        let query = EventQuery { event: handler.events_id.clone(), before: String::new(), ..query };
        let new = NewJob {
            kind: JobKind::Replay,
            filter: serde_json::to_string(&query).map_err(|e| Refusal::Internal(e.to_string()))?,
            handler_id: Some(handler.id),
            matched,
            upto,
            created_by: actor.audit_name(),
        };
        let changes = json!({"handler": audit::handler_target(&handler), "matched": matched});
        let job = self.start_job(actor, new, changes).await?;
        Ok(BulkStart { matched, succeeded: 0, job: Some(job) })
    }

    async fn start_job(&self, actor: &Actor, new: NewJob, mut changes: serde_json::Value) -> Result<BulkJob, Refusal> {
        let actor = actor.clone();
        let action = format!("deliveries.{}", if new.kind == JobKind::Retry { "bulk_retry" } else { "replay" });
        changes["filter"] = serde_json::from_str(&new.filter).unwrap_or_default();
        let job = self
            .db
            .write(move |conn| {
                if let Some(running) = BulkJob::running_like(conn, &new)? {
                    return Ok(Err(running));
                }
                let job = BulkJob::create(conn, &new)?;
                audit::record(conn, &actor, &action, &format!("job {}", job.id), changes)?;
                Ok(Ok(job))
            })
            .await?
            .map_err(Refusal::AlreadyRunning)?;
        tracing::info!(job = job.id, kind = %job.kind, matched = job.matched, "bulk job started");
        self.jobs.notify_one();
        Ok(job)
    }

    /// Stops a running job: what it has done stays done.
    pub async fn cancel_job(&self, actor: &Actor, id: i64) -> Result<BulkJob, Refusal> {
        actor.must(Action::Retry)?;
        let actor = actor.clone();
        let cancelled = self
            .db
            .write(move |conn| {
                let job = BulkJob::find(conn, id)?;
                if !BulkJob::cancel(conn, id)? {
                    return Ok(Err(job));
                }
                let changes = json!({"done": job.done, "matched": job.matched});
                audit::record(conn, &actor, "deliveries.job_cancel", &format!("job {id}"), changes)?;
                BulkJob::find(conn, id).map(Ok)
            })
            .await
            .map_err(|e| if e.is_not_found() { Refusal::NotFound(Missing::Job(id)) } else { Refusal::Db(e) })?;
        cancelled.map_err(|job| Refusal::Conflict(format!("job {id} is {} already", job.state)))
    }

    /// Runs the jobs, for ever: each running job a batch in turn, until none
    /// is left; then sleeps until one is started (here, or on another
    /// instance: it looks every few seconds).
    pub async fn run_jobs(&self) {
        loop {
            let running = match self.db.read(BulkJob::running).await {
                Ok(running) => running,
                Err(e) => {
                    tracing::warn!(error = %cause_chain(&e), "cannot read the running bulk jobs");
                    Vec::new()
                }
            };
            if running.is_empty() {
                let _ = tokio::time::timeout(POLL, self.jobs.notified()).await;
                continue;
            }
            for job in running {
                match self.run_batch(job).await {
                    Ok(0) => {}
                    Ok(_) => self.dispatcher.wake(),
                    Err(e) => {
                        tracing::warn!(error = %cause_chain(&e), "a bulk job's batch failed; it is tried again");
                        tokio::time::sleep(POLL).await;
                    }
                }
                tokio::time::sleep(PAUSE).await;
            }
        }
    }

    /// One batch of `job`, in one transaction; how many rows it queued.
    async fn run_batch(&self, job: BulkJob) -> Result<usize, DbError> {
        let max_attempts = i32::try_from(self.settings.retry_schedule.max_attempts()).unwrap_or(i32::MAX);
        let (id, position, upto) = (job.id, job.position, job.upto);
        match job.kind {
            JobKind::Retry => {
                let filter = serde_json::from_str::<DeliveryQuery>(&job.filter).ok().and_then(|q| q.parse().ok());
                let Some((filter, _)) = filter else { return self.abandon(id).await };
                self.db
                    .write(move |conn| {
                        if !BulkJob::take_batch(conn, id, position)? {
                            return Ok(0);
                        }
                        let ids = jobs::retryable_after(conn, &filter, position, upto, BATCH)?;
                        let n = jobs::retry_many(conn, &ids)?;
                        let finished = (ids.len() as i64) < BATCH;
                        BulkJob::advance(conn, id, ids.last().copied().unwrap_or(upto), n as i64, finished)?;
                        Ok(n)
                    })
                    .await
            }
            JobKind::Replay => {
                let filter = serde_json::from_str::<EventQuery>(&job.filter).ok().and_then(|q| q.parse().ok());
                let (Some((filter, _)), Some(handler_id)) = (filter, job.handler_id) else {
                    return self.abandon(id).await;
                };
                self.db
                    .write(move |conn| {
                        if !BulkJob::take_batch(conn, id, position)? {
                            return Ok(0);
                        }
                        // A handler deleted, disabled or given another event meanwhile ends the replay.
                        let handler = Handler::find_optional(conn, handler_id)?;
                        let same = |h: &Handler| {
                            h.status == HandlerStatus::Enabled && filter.events_id.as_deref() == Some(&h.events_id)
                        };
                        let Some(handler) = handler.filter(same) else {
                            BulkJob::cancel(conn, id)?;
                            return Ok(0);
                        };
                        let events = jobs::replayable_after(conn, &filter, &handler.events_id, position, upto, BATCH)?;
                        let attempts = handler.max_attempts.unwrap_or(max_attempts);
                        let n = jobs::replay_to(conn, &handler, id, &events, attempts)?;
                        let finished = (events.len() as i64) < BATCH;
                        let last = events.last().map_or(upto, |(event_id, _, _)| *event_id);
                        BulkJob::advance(conn, id, last, n as i64, finished)?;
                        Ok(n)
                    })
                    .await
            }
        }
    }

    /// A job whose filter no longer reads (written by another version) is cancelled.
    async fn abandon(&self, id: i64) -> Result<usize, DbError> {
        tracing::warn!(job = id, "a bulk job's filter cannot be read; the job is cancelled");
        self.db.write(move |conn| BulkJob::cancel(conn, id)).await.map(|_| 0)
    }
}

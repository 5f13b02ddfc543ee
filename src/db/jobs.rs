//! The `bulk_jobs` table: a bulk retry or a replay (DESIGN §8.5), run in the
//! background a batch at a time. The row is the job's whole state — its
//! filter as typed, how far it has come (`position`, the last delivery or
//! event id done), and up to which id it goes (`upto`, the newest matching
//! row when it was started) — so it survives a restart, and instances
//! sharing a PostgreSQL database take its batches in turn: a batch starts by
//! moving the row from the position it read, under the row's lock, and does
//! nothing if another has moved it meanwhile.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{
    Read, Write,
    delivery_list::{DeliveryFilter, matching_rows},
    event_list::EventFilter,
    handlers::Handler,
    now,
    schema::{bulk_jobs, deliveries, events},
};
pub use crate::domain::job::{JobKind, JobState};

#[derive(Debug, Clone, Queryable)]
pub struct BulkJob {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub kind: JobKind,
    /// The filter as typed (JSON of [`crate::service::filters`]' queries).
    pub filter: String,
    /// A replay's handler.
    pub handler_id: Option<i64>,
    #[diesel(deserialize_as = String)]
    pub state: JobState,
    /// How many rows it matched when it was started.
    pub matched: i64,
    /// How many it has retried or replayed.
    pub done: i64,
    /// The newest id it covers.
    pub upto: i64,
    /// The last id it has done (ids ascend).
    pub position: i64,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub finished_at: Option<NaiveDateTime>,
}

/// A job to start.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    pub filter: String,
    pub handler_id: Option<i64>,
    pub matched: i64,
    pub upto: i64,
    pub created_by: String,
}

/// What a deliveries filter would retry: how many, of which so many
/// succeeded already (they will be sent again), and the newest id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryCount {
    pub matched: i64,
    pub succeeded: i64,
    pub upto: i64,
}

/// What a delivery must be for a bulk retry: finished, or waiting for a
/// retry (made due now), of a handler that is enabled (a disabled one's would
/// only be cancelled again).
macro_rules! retryable {
    ($filter:expr) => {{
        use $crate::db::schema::{deliveries, handlers};
        matching_rows!($filter).filter(handlers::status.eq("enabled")).filter(
            deliveries::state
                .eq_any(["succeeded", "failed", "cancelled"])
                .or(deliveries::state.eq("pending").and(deliveries::attempts.gt(0))),
        )
    }};
}

/// The events a replay to `events_id` would deliver, unordered.
fn replayable(filter: &EventFilter, events_id: &str) -> events::BoxedQuery<'static, super::MultiBackend> {
    let mut q = events::table.filter(events::events_id.eq(events_id.to_owned())).into_boxed();
    if let Some(o) = &filter.object_id {
        q = q.filter(events::object_id.eq(o.clone()));
    }
    if let Some(from) = filter.from {
        q = q.filter(events::received_at.ge(from));
    }
    if let Some(to) = filter.to {
        q = q.filter(events::received_at.lt(to));
    }
    q
}

impl BulkJob {
    pub fn create(conn: &mut Write<'_>, new: &NewJob) -> QueryResult<BulkJob> {
        let at = now();
        diesel::insert_into(bulk_jobs::table)
            .values((
                bulk_jobs::kind.eq(new.kind.as_str()),
                bulk_jobs::filter.eq(&new.filter),
                bulk_jobs::handler_id.eq(new.handler_id),
                bulk_jobs::state.eq(if new.matched == 0 { "done" } else { "running" }),
                bulk_jobs::matched.eq(new.matched),
                bulk_jobs::upto.eq(new.upto),
                bulk_jobs::created_by.eq(&new.created_by),
                bulk_jobs::created_at.eq(at),
                bulk_jobs::updated_at.eq(at),
                bulk_jobs::finished_at.eq((new.matched == 0).then_some(at)),
            ))
            .returning(bulk_jobs::id)
            .get_result::<i64>(conn.db())
            .and_then(|id| Self::find(conn, id))
    }

    /// A running job of the same kind, filter and handler as `new`, if any.
    pub fn running_like(conn: &mut Read<'_>, new: &NewJob) -> QueryResult<Option<i64>> {
        let mut q = bulk_jobs::table
            .filter(bulk_jobs::state.eq("running"))
            .filter(bulk_jobs::kind.eq(new.kind.as_str()))
            .filter(bulk_jobs::filter.eq(new.filter.clone()))
            .into_boxed();
        q = match new.handler_id {
            Some(h) => q.filter(bulk_jobs::handler_id.eq(h)),
            None => q.filter(bulk_jobs::handler_id.is_null()),
        };
        q.select(bulk_jobs::id).first(conn.db()).optional()
    }

    pub fn find(conn: &mut Read<'_>, id: i64) -> QueryResult<BulkJob> {
        bulk_jobs::table.find(id).first(conn.db())
    }

    /// The newest `limit` jobs, newest first.
    pub fn recent(conn: &mut Read<'_>, limit: i64) -> QueryResult<Vec<BulkJob>> {
        bulk_jobs::table.order(bulk_jobs::id.desc()).limit(limit).load(conn.db())
    }

    /// The jobs still running, oldest first.
    pub fn running(conn: &mut Read<'_>) -> QueryResult<Vec<BulkJob>> {
        bulk_jobs::table.filter(bulk_jobs::state.eq("running")).order(bulk_jobs::id.asc()).load(conn.db())
    }

    /// Stops a running job; whether it was running.
    pub fn cancel(conn: &mut Write<'_>, id: i64) -> QueryResult<bool> {
        let at = now();
        let n = diesel::update(bulk_jobs::table.find(id).filter(bulk_jobs::state.eq("running")))
            .set((bulk_jobs::state.eq("cancelled"), bulk_jobs::updated_at.eq(at), bulk_jobs::finished_at.eq(at)))
            .execute(conn.db())?;
        Ok(n == 1)
    }

    /// Removes the jobs that finished before `before` (retention).
    pub fn prune_finished(conn: &mut Write<'_>, before: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(
            bulk_jobs::table.filter(bulk_jobs::state.ne("running")).filter(bulk_jobs::finished_at.lt(before)),
        )
        .execute(conn.db())
    }

    /// Takes the next batch of a running job that is at `position`: locks
    /// its row (on PostgreSQL another instance's batch waits here, then
    /// finds the position moved). `false` when it has moved, or the job
    /// is no longer running.
    pub fn take_batch(conn: &mut Write<'_>, id: i64, position: i64) -> QueryResult<bool> {
        let n = diesel::update(
            bulk_jobs::table.find(id).filter(bulk_jobs::state.eq("running")).filter(bulk_jobs::position.eq(position)),
        )
        .set(bulk_jobs::updated_at.eq(now()))
        .execute(conn.db())?;
        Ok(n == 1)
    }

    /// Records a batch: done up to id `position`, `n` more rows done, and
    /// whether the job is finished.
    pub fn advance(conn: &mut Write<'_>, id: i64, position: i64, n: i64, finished: bool) -> QueryResult<()> {
        let at = now();
        diesel::update(bulk_jobs::table.find(id))
            .set((
                bulk_jobs::position.eq(position),
                bulk_jobs::done.eq(bulk_jobs::done + n),
                bulk_jobs::updated_at.eq(at),
            ))
            .execute(conn.db())?;
        if finished {
            diesel::update(bulk_jobs::table.find(id).filter(bulk_jobs::state.eq("running")))
                .set((bulk_jobs::state.eq("done"), bulk_jobs::finished_at.eq(at)))
                .execute(conn.db())?;
        }
        Ok(())
    }
}

/// Bulk retry: what `filter` would retry now.
pub fn count_retryable(conn: &mut Read<'_>, filter: &DeliveryFilter) -> QueryResult<RetryCount> {
    let matched: i64 = retryable!(filter).count().get_result(conn.db())?;
    let succeeded: i64 = retryable!(filter).filter(deliveries::state.eq("succeeded")).count().get_result(conn.db())?;
    let upto: Option<i64> = retryable!(filter).select(diesel::dsl::max(deliveries::id)).first(conn.db())?;
    Ok(RetryCount { matched, succeeded, upto: upto.unwrap_or(0) })
}

/// Bulk retry: the next `limit` deliveries to retry after id `after`, up to
/// id `upto`, oldest first (so an object's deliveries are queued again in the
/// order they were made).
pub fn retryable_after(
    conn: &mut Read<'_>,
    filter: &DeliveryFilter,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    retryable!(filter)
        .filter(deliveries::id.gt(after))
        .filter(deliveries::id.le(upto))
        .order(deliveries::id.asc())
        .select(deliveries::id)
        .limit(limit)
        .load(conn.db())
}

/// Bulk retry: one more attempt, due now and outside the priority chain, for
/// each of the deliveries `ids` that is finished; those waiting for a retry
/// are made due now. How many were queued.
pub fn retry_many(conn: &mut Write<'_>, ids: &[i64]) -> QueryResult<usize> {
    let at = now();
    let finished =
        diesel::update(deliveries::table.filter(deliveries::id.eq_any(ids)).filter(deliveries::state.eq_any([
            "succeeded",
            "failed",
            "cancelled",
        ])))
        .set((
            deliveries::state.eq("pending"),
            deliveries::max_attempts.eq(deliveries::attempts + 1),
            deliveries::first_attempt_done.eq(true),
            deliveries::next_attempt_at.eq(at),
            deliveries::updated_at.eq(at),
        ))
        .execute(conn.db())?;
    let retrying = diesel::update(
        deliveries::table
            .filter(deliveries::id.eq_any(ids))
            .filter(deliveries::state.eq("pending"))
            .filter(deliveries::attempts.gt(0))
            .filter(deliveries::next_attempt_at.gt(at)),
    )
    .set((deliveries::next_attempt_at.eq(at), deliveries::updated_at.eq(at)))
    .execute(conn.db())?;
    Ok(finished + retrying)
}

/// Replay: how many events `filter` matches for a handler of `events_id`,
/// and the newest one's id.
pub fn count_replayable(conn: &mut Read<'_>, filter: &EventFilter, events_id: &str) -> QueryResult<(i64, i64)> {
    let matched: i64 = replayable(filter, events_id).count().get_result(conn.db())?;
    let upto: Option<i64> = replayable(filter, events_id).select(diesel::dsl::max(events::id)).first(conn.db())?;
    Ok((matched, upto.unwrap_or(0)))
}

/// Replay: the next `limit` events after id `after`, up to `upto`, oldest first.
pub fn replayable_after(
    conn: &mut Read<'_>,
    filter: &EventFilter,
    events_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> QueryResult<Vec<(i64, String, String)>> {
    replayable(filter, events_id)
        .filter(events::id.gt(after))
        .filter(events::id.le(upto))
        .order(events::id.asc())
        .select((events::id, events::entity, events::object_id))
        .limit(limit)
        .load(conn.db())
}

/// Replay: a new delivery of each of `events` (id, entity, object id) to
/// `handler`, due now, outside the priority chain, in the handler's ordering
/// group (so an object's replayed events go in the order received), with a
/// `webhook-id` of its own (it is a new message, not a repeat).
pub fn replay_to(
    conn: &mut Write<'_>,
    handler: &Handler,
    job_id: i64,
    events: &[(i64, String, String)],
    max_attempts: i32,
) -> QueryResult<usize> {
    let at = now();
    for (event_id, entity, object_id) in events {
        diesel::insert_into(deliveries::table)
            .values((
                deliveries::event_id.eq(event_id),
                deliveries::handler_id.eq(handler.id),
                deliveries::webhook_id.eq(format!("msg_replay{job_id}_{event_id}_{}", handler.id)),
                deliveries::priority.eq(handler.priority),
                deliveries::entity.eq(entity),
                deliveries::object_id.eq(object_id),
                deliveries::state.eq("pending"),
                deliveries::attempts.eq(0),
                deliveries::max_attempts.eq(max_attempts),
                deliveries::first_attempt_done.eq(true),
                deliveries::next_attempt_at.eq(at),
                deliveries::created_at.eq(at),
                deliveries::updated_at.eq(at),
                deliveries::ordering_key.eq(handler.ordering_key()),
            ))
            .execute(conn.db())?;
    }
    Ok(events.len())
}

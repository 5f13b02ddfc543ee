//! The `deliveries` table: one event for one handler, and the leases of the
//! dispatcher (DESIGN §4; the claim itself is in `claims.rs`). Claims are
//! leases: a delivery being attempted is `in_flight` with `next_attempt_at` =
//! the lease's end, so one that outlives its lease (its process died) is due
//! again like any pending one.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use diesel::{
    prelude::*,
    sql_types::{BigInt, Bool, Nullable, Text, Timestamp},
};
use serde::Serialize;

use crate::domain::DeliveryState;

use super::{
    Read, Write, now,
    prepared::{ByBackend, cached, id_list},
    schema::deliveries,
};

#[derive(Debug, Clone, Queryable, Identifiable, Serialize)]
#[diesel(table_name = deliveries)]
pub struct Delivery {
    pub id: i64,
    pub event_id: i64,
    pub handler_id: i64,
    pub webhook_id: String,
    pub priority: i32,
    pub entity: String,
    pub object_id: String,
    #[diesel(deserialize_as = String)]
    pub state: DeliveryState,
    pub attempts: i32,
    pub max_attempts: i32,
    pub first_attempt_done: bool,
    pub next_attempt_at: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// The ordering group it was created in (DESIGN §4.4).
    pub ordering_key: String,
}

/// When a delivery waiting on its event's chain is due: never, until
/// [`Delivery::unpark`] sets it to now. Far enough ahead to sort after any
/// real time, and written the same way by both backends' timestamps (as text
/// on SQLite).
pub const PARKED: NaiveDateTime = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(day) => day.and_time(NaiveTime::MIN),
    None => panic!("9999-12-31 is a date"),
};

/// Ends attempts for good: the deliveries `$3` (a JSON array of ids) leased
/// by `$4` for their attempt `$5` (a result that comes after its lease was
/// taken over, by another process or by this one again, ends nothing).
const END_ALL: ByBackend = ByBackend {
    sqlite: "
UPDATE deliveries SET state = $1, first_attempt_done = TRUE, next_attempt_at = $2,
    lease_owner = NULL, lease_until = NULL, updated_at = $2
WHERE id IN (SELECT value FROM json_each($3)) AND lease_owner = $4 AND state = 'in_flight' AND attempts = $5",
    postgres: "
UPDATE deliveries SET state = $1, first_attempt_done = TRUE, next_attempt_at = $2,
    lease_owner = NULL, lease_until = NULL, updated_at = $2
WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($3::jsonb)))
  AND lease_owner = $4 AND state = 'in_flight' AND attempts = $5",
};

/// Hands attempts that never started back: pending, due now, uncounted.
const GIVE_BACK: ByBackend = ByBackend {
    sqlite: "
UPDATE deliveries SET state = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,
    next_attempt_at = $1, updated_at = $1
WHERE id IN (SELECT value FROM json_each($2)) AND lease_owner = $3 AND state = 'in_flight'",
    postgres: "
UPDATE deliveries SET state = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,
    next_attempt_at = $1, updated_at = $1
WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($2::jsonb)))
  AND lease_owner = $3 AND state = 'in_flight'",
};

// The attempts that started and ended without a result, logged as
// `interrupted`: each numbered as it was counted at its claim, started when
// it was claimed, with why it has no result.

/// Those still in flight under the lease of `$1` at the end of a stop's grace.
const INTERRUPTED_AT_STOP: &str = "
/* $1 owner */
INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
    d.updated_at, 0, 'interrupted', NULL, '', '{}', '', 'still running at the end of the shutdown grace; attempted again', NULL
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.state = 'in_flight' AND d.lease_owner = $1";

/// SQLite, at a start: all those in flight (one process per file, so they
/// died with the last one).
const INTERRUPTED_BY_CRASH: &str = "
INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
    d.updated_at, 0, 'interrupted', NULL, '', '{}', '',
    'its process ended before a result was recorded (killed?); attempted again', NULL
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.state = 'in_flight'";

/// PostgreSQL: those in flight under the lease of a process that has no
/// connection open to the database (it died), locked; `$1` is
/// [`crate::db::APPLICATION_NAME_PREFIX`].
const INTERRUPTED_BY_DEATH: &str = "
/* $1 the application name's prefix */
INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
    d.updated_at, 0, 'interrupted', NULL, '', '{}', '',
    'its process ended before a result was recorded (killed?); attempted again', NULL
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.state = 'in_flight' AND d.id IN (
  SELECT id FROM deliveries d
  WHERE d.state = 'in_flight' AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $1 || d.lease_owner)
  FOR UPDATE SKIP LOCKED)";

/// PostgreSQL: the same deliveries, due again at once.
const RELEASE_DEAD: &str = "
/* $1 now, $2 the application name's prefix */
UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL, next_attempt_at = $1,
    updated_at = $1
WHERE id IN (
  SELECT id FROM deliveries d
  WHERE d.state = 'in_flight' AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $2 || d.lease_owner)
  FOR UPDATE SKIP LOCKED)";

/// Extends to `$1` the leases of the deliveries `$2` (a JSON array of ids) that `$3` holds.
const RENEW: ByBackend = ByBackend {
    sqlite: "
UPDATE deliveries SET lease_until = $1, next_attempt_at = $1
WHERE id IN (SELECT value FROM json_each($2)) AND lease_owner = $3 AND state = 'in_flight'",
    postgres: "
UPDATE deliveries SET lease_until = $1, next_attempt_at = $1
WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($2::jsonb)))
  AND lease_owner = $3 AND state = 'in_flight'",
};

/// Which of the deliveries `$1` (a JSON array of ids) exist, with whether
/// their handler keeps its deliveries (enabled or paused: a failure retries).
const PRESENT: ByBackend = ByBackend {
    sqlite: "
SELECT d.id, h.status IN ('enabled', 'paused') AS enabled
FROM deliveries d JOIN handlers h ON h.id = d.handler_id
WHERE d.id IN (SELECT value FROM json_each($1))",
    postgres: "
SELECT d.id, h.status IN ('enabled', 'paused') AS enabled
FROM deliveries d JOIN handlers h ON h.id = d.handler_id
WHERE d.id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)))",
};

/// The change that hands a claimed delivery back: pending, unleased, due at `$at`.
macro_rules! back_to_pending {
    ($at:expr) => {
        (
            deliveries::state.eq(DeliveryState::Pending.as_str()),
            deliveries::lease_owner.eq(None::<String>),
            deliveries::lease_until.eq(None::<NaiveDateTime>),
            deliveries::next_attempt_at.eq($at),
            deliveries::updated_at.eq($at),
        )
    };
}

impl Delivery {
    /// When its next attempt is due: `None` when it is finished, in flight,
    /// or parked until the first attempts before it in its event's chain
    /// have ended (due then, at no set time).
    pub fn due_at(&self) -> Option<NaiveDateTime> {
        (self.state == DeliveryState::Pending && self.next_attempt_at != PARKED).then_some(self.next_attempt_at)
    }

    /// Whether it waits for the first attempts of the handlers before it in
    /// its event's chain (rule 3).
    pub fn parked(&self) -> bool {
        self.state == DeliveryState::Pending && self.next_attempt_at == PARKED
    }

    /// The states of the deliveries `ids` (those still there).
    pub fn states_of(conn: &mut Read<'_>, ids: &[i64]) -> QueryResult<std::collections::HashMap<i64, DeliveryState>> {
        let rows: Vec<(i64, String)> = deliveries::table
            .filter(deliveries::id.eq_any(ids))
            .select((deliveries::id, deliveries::state))
            .load(conn.db())?;
        rows.into_iter().map(|(id, state)| Ok((id, super::text::parsed(&state)?))).collect()
    }

    pub fn for_event(conn: &mut Read<'_>, event_id: i64) -> QueryResult<Vec<Delivery>> {
        deliveries::table
            .filter(deliveries::event_id.eq(event_id))
            .order((deliveries::priority.asc(), deliveries::handler_id.asc()))
            .load(conn.db())
    }

    pub fn find(conn: &mut Read<'_>, id: i64) -> QueryResult<Delivery> {
        deliveries::table.find(id).first(conn.db())
    }

    /// [`Delivery::find`], `None` when there is none (it was deleted).
    pub fn find_optional(conn: &mut Read<'_>, id: i64) -> QueryResult<Option<Delivery>> {
        deliveries::table.find(id).first(conn.db()).optional()
    }

    /// Extends the leases of the deliveries `ids` that `owner` is attempting
    /// (one statement).
    pub fn renew_leases(
        conn: &mut Write<'_>,
        owner: &str,
        ids: &[i64],
        lease_until: NaiveDateTime,
    ) -> QueryResult<usize> {
        RENEW
            .on(conn.db())
            .bind::<Timestamp, _>(lease_until)
            .bind::<Text, _>(id_list(ids))
            .bind::<Text, _>(owner)
            .execute(conn.db())
    }

    /// Hands claimed deliveries whose attempts never started back, due at
    /// once and uncounted (one statement).
    pub fn release(conn: &mut Write<'_>, owner: &str, ids: &[i64]) -> QueryResult<usize> {
        GIVE_BACK
            .on(conn.db())
            .bind::<Timestamp, _>(now())
            .bind::<Text, _>(id_list(ids))
            .bind::<Text, _>(owner)
            .execute(conn.db())
    }

    /// Hands back everything `owner` still has in flight (at a stop, past
    /// the grace): each attempt is logged as interrupted and is due again.
    pub fn release_owned(conn: &mut Write<'_>, owner: &str) -> QueryResult<usize> {
        cached(INTERRUPTED_AT_STOP).bind::<Text, _>(owner).execute(conn.db())?;
        let at = now();
        diesel::update(
            deliveries::table
                .filter(unfinished())
                .filter(deliveries::lease_owner.eq(owner))
                .filter(deliveries::state.eq(DeliveryState::InFlight.as_str())),
        )
        .set(back_to_pending!(at))
        .execute(conn.db())
    }

    /// After a crash of the only process (SQLite): every attempt cut off is
    /// logged as interrupted and is due again.
    pub fn release_all(conn: &mut Write<'_>) -> QueryResult<usize> {
        cached(INTERRUPTED_BY_CRASH).execute(conn.db())?;
        let at = now();
        diesel::update(deliveries::table.filter(deliveries::state.eq(DeliveryState::InFlight.as_str())))
            .set(back_to_pending!(at))
            .execute(conn.db())
    }

    /// PostgreSQL, at a start: the attempts of processes that died (no
    /// connection of theirs is open) are logged as interrupted and due again
    /// at once, without waiting for their leases to run out.
    pub fn release_dead(conn: &mut Write<'_>) -> QueryResult<usize> {
        let prefix = crate::db::APPLICATION_NAME_PREFIX;
        cached(INTERRUPTED_BY_DEATH).bind::<Text, _>(prefix).execute(conn.db())?;
        cached(RELEASE_DEAD).bind::<Timestamp, _>(now()).bind::<Text, _>(prefix).execute(conn.db())
    }

    /// Writes the end of an attempt, if `owner` still holds the lease for it.
    pub fn finish(conn: &mut Write<'_>, owner: &str, id: i64, end: &Finish) -> QueryResult<bool> {
        let at = now();
        let n = diesel::update(
            deliveries::table
                .find(id)
                .filter(deliveries::lease_owner.eq(owner))
                .filter(deliveries::state.eq(DeliveryState::InFlight.as_str()))
                .filter(deliveries::attempts.eq(end.attempts)),
        )
        .set((
            deliveries::state.eq(end.state.as_str()),
            deliveries::attempts.eq(end.attempts),
            deliveries::first_attempt_done.eq(true),
            deliveries::next_attempt_at.eq(end.next_attempt_at.unwrap_or(at)),
            deliveries::lease_owner.eq(None::<String>),
            deliveries::lease_until.eq(None::<NaiveDateTime>),
            deliveries::updated_at.eq(at),
        ))
        .execute(conn.db())?;
        Ok(n == 1)
    }

    /// Ends attempts number `attempt` of `owner` for good (succeeded,
    /// failed, cancelled), many at once.
    pub fn end_all(
        conn: &mut Write<'_>,
        owner: &str,
        ids: &[i64],
        attempt: i32,
        state: DeliveryState,
    ) -> QueryResult<usize> {
        END_ALL
            .on(conn.db())
            .bind::<Text, _>(state.as_str())
            .bind::<Timestamp, _>(now())
            .bind::<Text, _>(id_list(ids))
            .bind::<Text, _>(owner)
            .bind::<diesel::sql_types::Integer, _>(attempt)
            .execute(conn.db())
    }

    /// Of the deliveries `ids`, those still there, each with whether its
    /// handler is enabled now (the recorder's look before it writes).
    pub fn still_present(conn: &mut Read<'_>, ids: &[i64]) -> QueryResult<Vec<(i64, bool)>> {
        #[derive(QueryableByName)]
        struct Present {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Bool)]
            enabled: bool,
        }
        let rows: Vec<Present> = PRESENT.on(conn.db()).bind::<Text, _>(id_list(ids)).load(conn.db())?;
        Ok(rows.into_iter().map(|r| (r.id, r.enabled)).collect())
    }

    /// Queues a finished delivery again for one more attempt, outside the
    /// priority chain. `Ok(None)` when it is still pending or in flight.
    pub fn retry(conn: &mut Write<'_>, id: i64) -> QueryResult<Option<Delivery>> {
        let delivery = Self::find(conn, id)?;
        let Some(next) = delivery.state.manual_retry() else { return Ok(None) };
        let at = now();
        diesel::update(deliveries::table.find(id).filter(deliveries::state.eq(delivery.state.as_str())))
            .set((
                deliveries::state.eq(next.as_str()),
                deliveries::max_attempts.eq(delivery.attempts + 1),
                deliveries::first_attempt_done.eq(true),
                deliveries::next_attempt_at.eq(at),
                deliveries::updated_at.eq(at),
            ))
            .execute(conn.db())?;
        Self::find(conn, id).map(Some)
    }

    /// Moves handler `handler_id`'s unfinished deliveries into the ordering
    /// group `key` (after an edit of its target or group).
    pub fn regroup_unfinished(conn: &mut Write<'_>, handler_id: i64, key: &str) -> QueryResult<usize> {
        diesel::update(
            deliveries::table
                .filter(deliveries::handler_id.eq(handler_id))
                .filter(deliveries::state.eq_any([DeliveryState::Pending.as_str(), DeliveryState::InFlight.as_str()]))
                .filter(deliveries::ordering_key.ne(key)),
        )
        .set(deliveries::ordering_key.eq(key))
        .execute(conn.db())
    }

    /// Has PostgreSQL take the table's statistics again (its planner's
    /// picture of the backlog; see the dispatcher's slow-claim check).
    pub fn refresh_statistics(conn: &mut Write<'_>) -> QueryResult<()> {
        diesel::sql_query("ANALYZE deliveries").execute(conn.db()).map(drop)
    }

    /// Removes at most `batch` deliveries that finished before `before`
    /// (retention).
    pub fn prune_finished(conn: &mut Write<'_>, before: NaiveDateTime, batch: i64) -> QueryResult<usize> {
        diesel::sql_query(
            "DELETE FROM deliveries WHERE id IN
               (SELECT id FROM deliveries
                WHERE state IN ('succeeded', 'failed', 'cancelled') AND updated_at < $1
                ORDER BY updated_at LIMIT $2)",
        )
        .bind::<Timestamp, _>(before)
        .bind::<BigInt, _>(batch)
        .execute(conn.db())
    }

    /// Cancels a handler's pending deliveries, each logged as `cancelled`; the
    /// handlers after it in those events' chains go on.
    pub fn cancel_pending_of_handler(conn: &mut Write<'_>, handler_id: i64, reason: &str) -> QueryResult<usize> {
        let at = now();
        diesel::sql_query(
            "INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
                 started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
             SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts + 1,
                 $1, 0, 'cancelled', NULL, '', '{}', '', $2, NULL
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.handler_id = $3 AND d.state = 'pending'",
        )
        .bind::<Timestamp, _>(at)
        .bind::<Text, _>(reason)
        .bind::<BigInt, _>(handler_id)
        .execute(conn.db())?;
        let cancelled: Vec<(i64, bool)> = diesel::update(
            deliveries::table
                .filter(deliveries::handler_id.eq(handler_id))
                .filter(deliveries::state.eq(DeliveryState::Pending.as_str())),
        )
        .set((deliveries::state.eq(DeliveryState::Cancelled.as_str()), deliveries::updated_at.eq(at)))
        .returning((deliveries::event_id, deliveries::first_attempt_done))
        .get_results(conn.db())?;
        // Those that had not had their first attempt held up their chain.
        let chains: Vec<i64> = cancelled.iter().filter(|(_, done)| !done).map(|(event, _)| *event).collect();
        Self::unpark(conn, &chains)?;
        Ok(cancelled.len())
    }

    /// Takes handler `handler_id`'s pending deliveries out of their events'
    /// chains (it is paused: the handlers after it go on without it), and
    /// makes due the chains they held.
    pub fn leave_chains(conn: &mut Write<'_>, handler_id: i64) -> QueryResult<usize> {
        let chains = Self::chains_held_by(conn, handler_id)?;
        Self::step_out(conn, &[handler_id])?;
        Self::unpark(conn, &chains)
    }

    /// [`Delivery::leave_chains`] for every paused handler with a delivery
    /// still in a chain (the upkeep's sweep; usually none); how many stepped out.
    pub fn leave_chains_of_paused(conn: &mut Write<'_>) -> QueryResult<usize> {
        let paused: Vec<i64> = super::schema::handlers::table
            .filter(super::schema::handlers::status.eq(crate::domain::HandlerStatus::Paused.as_str()))
            .select(super::schema::handlers::id)
            .load(conn.db())?;
        let mut chains = Vec::new();
        for id in &paused {
            chains.extend(Self::chains_held_by(conn, *id)?);
        }
        if chains.is_empty() {
            return Ok(0);
        }
        let n = Self::step_out(conn, &paused)?;
        Self::unpark(conn, &chains)?;
        Ok(n)
    }

    /// The pending deliveries of `handler_ids` not yet past their first
    /// attempt: out of their chains, due now if they were parked.
    fn step_out(conn: &mut Write<'_>, handler_ids: &[i64]) -> QueryResult<usize> {
        let at = now();
        diesel::update(
            deliveries::table
                .filter(deliveries::handler_id.eq_any(handler_ids))
                .filter(deliveries::state.eq(DeliveryState::Pending.as_str()))
                .filter(deliveries::first_attempt_done.eq(false)),
        )
        .set((
            deliveries::first_attempt_done.eq(true),
            deliveries::next_attempt_at.eq(diesel::dsl::sql::<Timestamp>("CASE WHEN next_attempt_at = ")
                .bind::<Timestamp, _>(PARKED)
                .sql(" THEN ")
                .bind::<Timestamp, _>(at)
                .sql(" ELSE next_attempt_at END")),
            deliveries::updated_at.eq(at),
        ))
        .execute(conn.db())
    }

    /// The events whose chain may wait on the first attempt of a delivery of
    /// `handler_id`: those to [`Delivery::unpark`] once its deliveries are
    /// deleted.
    pub fn chains_held_by(conn: &mut Read<'_>, handler_id: i64) -> QueryResult<Vec<i64>> {
        deliveries::table
            .filter(deliveries::handler_id.eq(handler_id))
            .filter(unfinished())
            .filter(deliveries::first_attempt_done.eq(false))
            .select(deliveries::event_id)
            .load(conn.db())
    }

    /// How many deliveries are waiting or being attempted.
    pub fn count_unfinished(conn: &mut Read<'_>) -> QueryResult<i64> {
        deliveries::table.filter(unfinished()).count().get_result(conn.db())
    }

    /// When the next unfinished delivery is due, if any: the earliest of each
    /// handler's first entry in the due index (which is by handler).
    pub fn next_due(conn: &mut Read<'_>) -> QueryResult<Option<NaiveDateTime>> {
        #[derive(QueryableByName)]
        struct Due {
            #[diesel(sql_type = Nullable<Timestamp>)]
            next_attempt_at: Option<NaiveDateTime>,
        }
        // A handler held back by a Retry-After: its due work is due when the
        // hold ends; a rate-limited one's, at its next start time.
        cached(
            "SELECT MIN(CASE WHEN y.rate_next > y.ready THEN y.rate_next ELSE y.ready END) AS next_attempt_at
             FROM (SELECT x.rate_next, CASE WHEN x.hold_until > x.first_due THEN x.hold_until ELSE x.first_due END AS ready
                   FROM (SELECT h.hold_until, CASE WHEN h.rate_limit_milli IS NULL THEN NULL ELSE h.rate_next END AS rate_next,
                                (SELECT d.next_attempt_at FROM deliveries d
                                 WHERE d.handler_id = h.id AND d.state IN ('pending', 'in_flight')
                                 ORDER BY d.handler_id, d.next_attempt_at LIMIT 1) AS first_due
                         FROM handlers h WHERE h.status <> 'paused') AS x) AS y",
        )
        .get_result::<Due>(conn.db())
        .map(|due| due.next_attempt_at)
    }
}

/// `state IN ('pending', 'in_flight')` written out, not bound: SQLite uses a
/// partial index only when it can see the query's condition implies the
/// index's, which it cannot through bound parameters.
fn unfinished() -> diesel::expression::SqlLiteral<diesel::sql_types::Bool> {
    diesel::dsl::sql("state IN ('pending', 'in_flight')")
}

/// How an attempt leaves its delivery.
#[derive(Debug, Clone)]
pub struct Finish {
    pub state: DeliveryState,
    pub attempts: i32,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// The deliveries' hot and lifecycle statements as they run, for the golden
/// files (`db::golden`).
#[cfg(test)]
pub(super) fn statements() -> Vec<(&'static str, super::Backend, String)> {
    use super::Backend::{Postgres, Sqlite};
    let mut all: Vec<(&'static str, super::Backend, String)> = vec![
        ("interrupted_by_death", Postgres, INTERRUPTED_BY_DEATH.into()),
        ("release_dead", Postgres, RELEASE_DEAD.into()),
    ];
    for (name, sql) in [("interrupted_at_stop", INTERRUPTED_AT_STOP), ("interrupted_by_crash", INTERRUPTED_BY_CRASH)] {
        all.push((name, Sqlite, sql.into()));
        all.push((name, Postgres, sql.into()));
    }
    for (name, sql) in [("end_all", END_ALL), ("give_back", GIVE_BACK), ("renew", RENEW), ("present", PRESENT)] {
        all.push((name, Sqlite, sql.sqlite.into()));
        all.push((name, Postgres, sql.postgres.into()));
    }
    all
}

//! The dispatcher's claim (DESIGN §4): which due deliveries it may take now —
//! per-object order, the priority chain, per-handler room — leased to this
//! process, with what their attempts need. Each handler with room is looked
//! at on its own, through the due index by handler: one at its limit (an
//! endpoint that hangs, with a backlog behind it) costs the claims of the
//! others nothing.
//!
//! A delivery waiting on a handler before it in its event's chain (rule 3) is
//! *parked*: not due ([`PARKED`](super::deliveries::PARKED)) until the first attempt before it ends, when
//! [`Delivery::unpark`] makes it due, in the transaction that ends that
//! attempt. So a hung handler at the head of a chain leaves the handlers
//! after it no backlog of due rows that every claim would step over.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{
    DbConnection, Write,
    deliveries::{Delivery, PARKED},
    now,
    prepared::{ByBackend, cached, id_list},
};
use crate::domain::{HandlerStatus, HandlerType, RateLimit};

mod sqlite;

/// A claimed delivery with what its attempt needs: the payload and the
/// handler as it is now (an edit applies to the next attempt).
#[derive(Debug, Clone, QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = BigInt)]
    pub event_id: i64,
    #[diesel(sql_type = BigInt)]
    pub handler_id: i64,
    #[diesel(sql_type = Text)]
    pub webhook_id: String,
    #[diesel(sql_type = Text)]
    pub entity: String,
    #[diesel(sql_type = Text)]
    pub object_id: String,
    /// Attempts started, this one included: this attempt's number.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
    /// Whether an attempt before this one ended (this one does not hold up
    /// the rest of its event's chain).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub first_attempt_done: bool,
    #[diesel(sql_type = Text)]
    pub events_id: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = Text, deserialize_as = super::text::Checked<HandlerType>)]
    pub handler_type: HandlerType,
    #[diesel(sql_type = Text)]
    pub target: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
    /// The secret before the last rotation, signing beside `secret` until
    /// `previous_secret_until` (see [`Claimed::signing_secrets`]).
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub previous_secret: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamp>)]
    pub previous_secret_until: Option<chrono::NaiveDateTime>,
    #[diesel(sql_type = Integer)]
    pub timeout_ms: i32,
    #[diesel(sql_type = Text, deserialize_as = super::text::Checked<HandlerStatus>)]
    pub handler_status: HandlerStatus,
    /// The handler's own retry schedule (DESIGN §8.1); `None`: the global one.
    #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
    pub retry_schedule: Option<String>,
    /// The handler's rate limit (DESIGN §8.1), in thousandths of an attempt a second.
    #[diesel(sql_type = diesel::sql_types::Nullable<Integer>)]
    pub rate_limit_milli: Option<i32>,
    /// A rate-limited handler's attempt starts no sooner (see [`space_out`]).
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamp>)]
    pub not_before: Option<NaiveDateTime>,
    /// Whether the handler's last attempts failed (a success ends its run of failures).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub handler_failing: bool,
}

impl Claimed {
    /// The secrets that sign an attempt at `at`: the current one, and the one
    /// before it while its overlap lasts.
    pub fn signing_secrets(&self, at: chrono::NaiveDateTime) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let (Some(previous), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && until > at
        {
            secrets.push(previous);
        }
        secrets
    }
}

/// What the claim may take.
#[derive(Debug, Clone)]
pub struct ClaimLimits {
    /// The most deliveries to claim.
    pub limit: i64,
    /// The most deliveries of one handler in flight in this process.
    pub per_handler: i64,
    /// Attempts in flight in this process, by handler (`{"12": 40}`).
    pub busy: String,
}

// The claim's SQL, each backend's text written out in full. The two
// backends' claims share their rules — the room of each handler, per-object
// order (rule 4), the priority chain (rule 3) — spelled the same way in each;
// PostgreSQL runs them as one statement (a lateral join), SQLite as the
// statements of one transaction (it has no lateral join, nor a `LIMIT` that
// reads the outer query). The texts as they run are also in
// `tests/sql/claim*.sql`, held to these by a test.
//
// The rules, for a delivery `c` of a handler `h`:
// - room: the per-handler limit less what the handler has in flight in this
//   process (the JSON map `busy`), at most the claim's limit; a handler with
//   no room, or nothing due (one probe of the due index, which is by
//   handler), is not looked at further, however long its backlog. Every
//   status but paused counts: a delivery of a handler disabled a moment ago is still
//   claimed, and its attempt ends it;
// - rule 4: no delivery of an earlier event about the same object in the same
//   ordering group is unfinished, whichever its handler (one probe of
//   `deliveries_object`);
// - rule 3, for a first attempt: no handler before it in its event's chain
//   (priority, then id) is still waiting for its first attempt to end (a
//   parked delivery is not due, so this only confirms it).
// - rate (DESIGN §8.1): a rate-limited handler's room is also the start times
//   it has left before the look-ahead's end, one interval apart from the
//   earliest free one (`rate_next`), which the claim moves past those it
//   hands out. On PostgreSQL its row is locked for that (`SKIP LOCKED`: a
//   handler another process is pacing is left to it this time), so every
//   process sharing the database draws from one handler's one sequence.
// Candidates are taken in due order (the due index's); each costs a few
// index probes, and only its handler's rows are looked at.

/// How far ahead a claim hands out a rate-limited handler's start times: its
/// attempts wait at most this long in flight for their turn, and a handler
/// limited to N a second is claimed about every this long.
pub const RATE_LOOK_AHEAD: std::time::Duration = std::time::Duration::from_millis(250);

/// PostgreSQL: one round trip, the lease and the load together, a statement
/// in a transaction of its own ([`crate::db::Db::bookkeep_one`]). Each handler with room is joined laterally to
/// its candidates, and the first `$4` of all in due order are picked. `=
/// ANY(ARRAY(…))`: primary-key lookups of the few picked rows, never a hash
/// join over the whole table; rows another process holds are skipped. The
/// claim counts the attempt; a picked row whose lease ran out is logged as
/// interrupted (the statement's parts all read the rows as they were before
/// it: `d.attempts` there is the cut-off attempt's number, `claimed`'s the
/// new one's).
/// `set_config(…, true)` makes this transaction's commit return before the WAL
/// reaches the disk, like [`crate::db::Db::bookkeep`] but without its `BEGIN`
/// and `COMMIT` round trips. It is evaluated with the rows returned: a claim
/// that takes nothing commits as usual, with next to nothing to flush.
const CLAIM_POSTGRES: &str = "
/* $1 owner, $2 the lease's end, $3 now, $4 limit, $5 per handler, $6 busy, $7 the rate look-ahead's end */
WITH paced AS MATERIALIZED (
  SELECT h.id, h.rate_limit_milli, GREATEST(COALESCE(h.rate_next, $3), $3) AS start
  FROM handlers h
  WHERE h.rate_limit_milli IS NOT NULL AND h.status <> 'paused' AND (h.hold_until IS NULL OR h.hold_until <= $3)
    AND (h.rate_next IS NULL OR h.rate_next < $7)
    AND $5 - COALESCE(($6::jsonb ->> h.id::text)::bigint, 0) > 0
    AND (SELECT 1 FROM deliveries u
         WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= $3
         ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1
  FOR NO KEY UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
  SELECT id, state AS was FROM deliveries
  WHERE id = ANY(ARRAY(
      SELECT e.id
      FROM (
        SELECT h.id AS id, LEAST($4, $5 - COALESCE(($6::jsonb ->> h.id::text)::bigint, 0)) AS room
        FROM handlers h
        WHERE h.rate_limit_milli IS NULL AND h.status <> 'paused' AND (h.hold_until IS NULL OR h.hold_until <= $3)
          AND $5 - COALESCE(($6::jsonb ->> h.id::text)::bigint, 0) > 0
          AND (SELECT 1 FROM deliveries u
               WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= $3
               ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1
        UNION ALL
        SELECT p.id, LEAST($4, $5 - COALESCE(($6::jsonb ->> p.id::text)::bigint, 0),
                     CEIL(EXTRACT(EPOCH FROM ($7 - p.start)) * p.rate_limit_milli / 1000)::bigint)
        FROM paced p
      ) AS r CROSS JOIN LATERAL (
        SELECT c.id, c.next_attempt_at
        FROM deliveries c
        WHERE c.handler_id = r.id AND c.state IN ('pending', 'in_flight') AND c.next_attempt_at <= $3
          AND NOT EXISTS (
            SELECT 1 FROM deliveries p
            WHERE p.ordering_key = c.ordering_key AND p.entity = c.entity AND p.object_id = c.object_id
              AND p.event_id < c.event_id AND p.state IN ('pending', 'in_flight'))
          AND (c.first_attempt_done OR NOT EXISTS (
            SELECT 1 FROM deliveries q
            WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
              AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id))))
        ORDER BY c.next_attempt_at, c.id
        LIMIT r.room
      ) AS e
      ORDER BY e.next_attempt_at, e.id
      LIMIT $4))
    AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE deliveries d SET state = 'in_flight', attempts = d.attempts + 1, lease_owner = $1, lease_until = $2,
      next_attempt_at = $2, updated_at = $3
  FROM picked p WHERE d.id = p.id
  RETURNING d.id, d.attempts, d.handler_id
), interrupted AS (
  INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
      started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
  SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
      d.updated_at, 0, 'interrupted', NULL, '', '{}', '',
      'its lease ran out before a result was recorded (its process was killed or stopped answering); attempted again', NULL
  FROM picked p JOIN deliveries d ON d.id = p.id JOIN events e ON e.id = d.event_id
  WHERE p.was = 'in_flight'
), spaced AS (
  UPDATE handlers h SET rate_next = p.start + make_interval(secs => (n.k * 1000.0 / p.rate_limit_milli)::float8)
  FROM paced p JOIN (SELECT handler_id, COUNT(*) AS k FROM claimed GROUP BY handler_id) AS n ON n.handler_id = p.id
  WHERE h.id = p.id
)
SELECT d.id, d.event_id, d.handler_id, d.webhook_id, d.entity, d.object_id, c.attempts AS attempts,
    d.max_attempts, d.first_attempt_done, e.events_id, e.payload, h.handler_type, h.target, h.secret,
    h.previous_secret, h.previous_secret_until, h.timeout_ms, h.status AS handler_status, h.retry_schedule,
    h.rate_limit_milli, p.start AS not_before, h.failures_in_a_row > 0 AS handler_failing
FROM claimed c JOIN deliveries d ON d.id = c.id JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
  LEFT JOIN paced p ON p.id = d.handler_id
WHERE set_config('synchronous_commit', 'off', true) = 'off'
ORDER BY d.id";

/// Makes due the parked deliveries whose turn has come (of some events, or
/// of all): those of the next handler of a chain whose first attempt before
/// it ended, was cancelled or deleted (rule 3 above). On PostgreSQL a row
/// another transaction holds is skipped, not waited for: it is being
/// cancelled or deleted, or made due by another; waiting could deadlock with
/// a cancellation that locks the rows in another order.
const UNPARK_EVENTS: ByBackend = ByBackend {
    sqlite: "
/* $1 now, $2 the events, a JSON array, $3 PARKED */
UPDATE deliveries SET next_attempt_at = $1
WHERE id IN (
  SELECT c.id FROM deliveries c
  WHERE c.event_id IN (SELECT value FROM json_each($2))
    AND c.state = 'pending' AND NOT c.first_attempt_done AND c.next_attempt_at = $3
    AND NOT EXISTS (
      SELECT 1 FROM deliveries q
      WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
        AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id))))",
    postgres: "
/* $1 now, $2 the events, a JSON array, $3 PARKED */
UPDATE deliveries SET next_attempt_at = $1
WHERE id IN (
  SELECT c.id FROM deliveries c
  WHERE c.event_id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($2::jsonb)))
    AND c.state = 'pending' AND NOT c.first_attempt_done AND c.next_attempt_at = $3
    AND NOT EXISTS (
      SELECT 1 FROM deliveries q
      WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
        AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id)))
  FOR UPDATE SKIP LOCKED)",
};
const UNPARK_ALL: ByBackend = ByBackend {
    sqlite: "
/* $1 now, $2 PARKED */
UPDATE deliveries SET next_attempt_at = $1
WHERE id IN (
  SELECT c.id FROM deliveries c
  WHERE c.state = 'pending' AND NOT c.first_attempt_done AND c.next_attempt_at = $2
    AND NOT EXISTS (
      SELECT 1 FROM deliveries q
      WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
        AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id))))",
    postgres: "
/* $1 now, $2 PARKED */
UPDATE deliveries SET next_attempt_at = $1
WHERE id IN (
  SELECT c.id FROM deliveries c
  WHERE c.state = 'pending' AND NOT c.first_attempt_done AND c.next_attempt_at = $2
    AND NOT EXISTS (
      SELECT 1 FROM deliveries q
      WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
        AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id)))
  FOR UPDATE SKIP LOCKED)",
};

impl Delivery {
    /// Claims due deliveries for `owner` until `lease_until`. On PostgreSQL the
    /// rows are locked `FOR UPDATE SKIP LOCKED`, so processes sharing the
    /// database never claim the same delivery. One statement on PostgreSQL
    /// (for [`crate::db::Db::bookkeep_one`]).
    pub fn claim(
        conn: &mut Write<'_>,
        owner: &str,
        lease_until: NaiveDateTime,
        limits: &ClaimLimits,
    ) -> QueryResult<Vec<Claimed>> {
        let at = now();
        let ahead = at + RATE_LOOK_AHEAD;
        let mut claimed: Vec<Claimed> = if let DbConnection::Postgres(_) = conn.db() {
            cached(CLAIM_POSTGRES)
                .bind::<Text, _>(owner)
                .bind::<Timestamp, _>(lease_until)
                .bind::<Timestamp, _>(at)
                .bind::<BigInt, _>(limits.limit)
                .bind::<BigInt, _>(limits.per_handler)
                .bind::<Text, _>(&limits.busy)
                .bind::<Timestamp, _>(ahead)
                .load(conn.db())?
        } else {
            sqlite::claim(conn, owner, lease_until, limits, (at, ahead))?
        };
        space_out(&mut claimed);
        Ok(claimed)
    }

    /// Makes due now the parked deliveries of the events `event_ids` whose
    /// turn has come; how many. In the transaction that ended (or cancelled,
    /// or deleted) a first attempt of these events.
    pub fn unpark(conn: &mut Write<'_>, event_ids: &[i64]) -> QueryResult<usize> {
        if event_ids.is_empty() {
            return Ok(0);
        }
        UNPARK_EVENTS
            .on(conn.db())
            .bind::<Timestamp, _>(now())
            .bind::<Text, _>(id_list(event_ids))
            .bind::<Timestamp, _>(PARKED)
            .execute(conn.db())
    }

    /// [`Delivery::unpark`] for every event: a look over all parked
    /// deliveries, at a start and now and then on PostgreSQL, where two
    /// processes ending an event's attempts at once may each have seen the
    /// other's first attempt as still running.
    pub fn unpark_all(conn: &mut Write<'_>) -> QueryResult<usize> {
        // A paused handler's delivery put back to pending (its attempt cut off
        // by a stop), or made by an ingestion that read the handler just
        // before it was paused, stands outside its chain like the others.
        let stepped_out = Self::leave_chains_of_paused(conn)?;
        let unparked =
            UNPARK_ALL.on(conn.db()).bind::<Timestamp, _>(now()).bind::<Timestamp, _>(PARKED).execute(conn.db())?;
        Ok(stepped_out + unparked)
    }
}

/// Gives the attempts of each rate-limited handler their start times: the
/// claim answered the handler's first (`not_before`), the others follow one
/// interval apart, in the claim's order.
fn space_out(claimed: &mut [Claimed]) {
    let mut nth: HashMap<i64, u32> = HashMap::new();
    for c in claimed.iter_mut() {
        let (Some(start), Some(rate)) = (c.not_before, c.rate_limit_milli.and_then(RateLimit::from_milli)) else {
            c.not_before = None;
            continue;
        };
        let n = nth.entry(c.handler_id).or_insert(0);
        c.not_before = Some(start + rate.interval() * *n);
        *n += 1;
    }
}

/// The claim's statements as they run, for the golden files (`db::golden`).
#[cfg(test)]
pub(super) fn statements() -> Vec<(&'static str, crate::db::Backend, String)> {
    use crate::db::Backend::{Postgres, Sqlite};
    let mut all: Vec<(&'static str, crate::db::Backend, String)> = [
        ("claim", Postgres, CLAIM_POSTGRES),
        ("claim_rooms", Sqlite, sqlite::ROOMS),
        ("claim_candidates", Sqlite, sqlite::CANDIDATES),
        ("claim_lease", Sqlite, sqlite::LEASE),
        ("claim_taken_over", Sqlite, sqlite::TAKEN_OVER),
        ("claim_load", Sqlite, sqlite::LOAD),
    ]
    .map(|(name, backend, sql)| (name, backend, sql.to_owned()))
    .to_vec();
    for (name, sql) in [("unpark_events", UNPARK_EVENTS), ("unpark_all", UNPARK_ALL)] {
        all.push((name, Sqlite, sql.sqlite.to_owned()));
        all.push((name, Postgres, sql.postgres.to_owned()));
    }
    all
}

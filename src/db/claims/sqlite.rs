//! SQLite's claim: the statements of one transaction (SQLite has no lateral
//! join, nor a `LIMIT` that reads the outer query), the rules spelled as in
//! PostgreSQL's one statement (see the parent module), and the rate-limited
//! handlers' start times moved on in the same transaction.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{ClaimLimits, Claimed};
use crate::{
    db::{
        Read, Write,
        handlers::Handler,
        prepared::{cached, id_list},
    },
    domain::RateLimit,
};

/// Leases what the claim may take to `owner` until `lease_until` (`at`: now,
/// and the rate look-ahead's end) and loads it, each rate-limited handler's
/// first start time in `not_before`.
pub(super) fn claim(
    conn: &mut Write<'_>,
    owner: &str,
    lease_until: NaiveDateTime,
    limits: &ClaimLimits,
    (at, ahead): (NaiveDateTime, NaiveDateTime),
) -> QueryResult<Vec<Claimed>> {
    let (ids, starts) = lease(conn, owner, lease_until, limits, at, ahead)?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed: Vec<Claimed> = cached(LOAD).bind::<Text, _>(id_list(&ids)).load(conn.db())?;
    for c in &mut claimed {
        c.not_before = starts.get(&c.handler_id).copied();
    }
    Ok(claimed)
}

/// SQLite, first: the handlers with room, with when their due work fell due
/// first (a second probe), so that they can be looked at oldest first, and no
/// further once the claim is full. (On PostgreSQL, the same column made the
/// planner's estimates, and the claim, several times worse.) `?N` is
/// parameter N wherever it first appears (`$4` here would be numbered 1,
/// being first in the text; see `prepared`).
pub(super) const ROOMS: &str = "
/* ?1 limit, ?2 per handler, ?3 busy, ?4 now, ?5 the rate look-ahead's end */
SELECT r.id, r.room, r.rate_limit_milli, r.rate_next,
    (SELECT u.next_attempt_at FROM deliveries u
     WHERE u.handler_id = r.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= ?4
     ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) AS first_due
FROM (
  SELECT h.id AS id, MIN(?1, ?2 - COALESCE((SELECT value FROM json_each(?3) WHERE key = CAST(h.id AS TEXT)), 0)) AS room,
         h.rate_limit_milli, h.rate_next
  FROM handlers h
  WHERE h.status <> 'paused' AND (h.hold_until IS NULL OR h.hold_until <= ?4)
    AND (h.rate_limit_milli IS NULL OR h.rate_next IS NULL OR h.rate_next < ?5)
    AND ?2 - COALESCE((SELECT value FROM json_each(?3) WHERE key = CAST(h.id AS TEXT)), 0) > 0
    AND (SELECT 1 FROM deliveries u
         WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= ?4
         ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1
) AS r";

/// SQLite, then for each handler with room: its first candidates.
pub(super) const CANDIDATES: &str = "
/* $1 handler, $2 now, $3 its room */
SELECT c.id, c.handler_id, c.next_attempt_at, c.state = 'in_flight' AS lease_ran_out
FROM deliveries c
WHERE c.handler_id = $1 AND c.state IN ('pending', 'in_flight') AND c.next_attempt_at <= $2
  AND NOT EXISTS (
    SELECT 1 FROM deliveries p
    WHERE p.ordering_key = c.ordering_key AND p.entity = c.entity AND p.object_id = c.object_id
      AND p.event_id < c.event_id AND p.state IN ('pending', 'in_flight'))
  AND (c.first_attempt_done OR NOT EXISTS (
    SELECT 1 FROM deliveries q
    WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
      AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id))))
ORDER BY c.next_attempt_at, c.id
LIMIT $3";

/// SQLite: the picked rows whose lease ran out, logged as interrupted before
/// they are leased again.
pub(super) const TAKEN_OVER: &str = "
/* $1 the picked ids, a JSON array */
INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
    d.updated_at, 0, 'interrupted', NULL, '', '{}', '',
    'its lease ran out before a result was recorded (its process was killed or stopped answering); attempted again', NULL
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.id IN (SELECT value FROM json_each($1)) AND d.state = 'in_flight'";

/// SQLite: the lease of the picked rows. The claim counts the attempt (so one
/// cut off is still counted, and its repeat has the next number).
pub(super) const LEASE: &str = "
/* $1 owner, $2 the lease's end, $3 now, $4 the picked ids, a JSON array */
UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, lease_owner = $1, lease_until = $2,
    next_attempt_at = $2, updated_at = $3
WHERE id IN (
  SELECT id FROM deliveries
  WHERE id IN (SELECT value FROM json_each($4)) AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3)
RETURNING id";

/// SQLite: what an attempt needs of the leased rows.
pub(super) const LOAD: &str = "
/* $1 the leased ids, a JSON array */
SELECT d.id, d.event_id, d.handler_id, d.webhook_id, d.entity, d.object_id, d.attempts,
    d.max_attempts, d.first_attempt_done, e.events_id, e.payload, h.handler_type, h.target, h.secret,
    h.previous_secret, h.previous_secret_until, h.timeout_ms, h.status AS handler_status, h.retry_schedule,
    h.rate_limit_milli, NULL AS not_before, h.failures_in_a_row > 0 AS handler_failing
FROM deliveries d JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
WHERE d.id IN (SELECT value FROM json_each($1))
ORDER BY d.id";

#[derive(QueryableByName)]
struct Room {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    room: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<Integer>)]
    rate_limit_milli: Option<i32>,
    #[diesel(sql_type = diesel::sql_types::Nullable<Timestamp>)]
    rate_next: Option<NaiveDateTime>,
    #[diesel(sql_type = Timestamp)]
    first_due: NaiveDateTime,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    handler_id: i64,
    #[diesel(sql_type = Timestamp)]
    next_attempt_at: NaiveDateTime,
    /// In flight and due: its lease ran out, its attempt is taken over.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    lease_ran_out: bool,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// SQLite: leases the deliveries [`pick`] picks (a picked row whose
/// lease ran out is logged as interrupted); their ids, and each
/// rate-limited handler's first start time, its next moved past them.
fn lease(
    conn: &mut Write<'_>,
    owner: &str,
    lease_until: NaiveDateTime,
    limits: &ClaimLimits,
    at: NaiveDateTime,
    ahead: NaiveDateTime,
) -> QueryResult<(Vec<i64>, HashMap<i64, NaiveDateTime>)> {
    let (candidates, paced) = pick(conn, limits, at, ahead)?;
    if candidates.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let taken_over: Vec<i64> = candidates.iter().filter(|c| c.lease_ran_out).map(|c| c.id).collect();
    if !taken_over.is_empty() {
        cached(TAKEN_OVER).bind::<Text, _>(id_list(&taken_over)).execute(conn.db())?;
    }
    let picked: Vec<i64> = candidates.iter().map(|c| c.id).collect();
    let leased: Vec<IdRow> = cached(LEASE)
        .bind::<Text, _>(owner)
        .bind::<Timestamp, _>(lease_until)
        .bind::<Timestamp, _>(at)
        .bind::<Text, _>(id_list(&picked))
        .load(conn.db())?;
    let leased: Vec<i64> = leased.into_iter().map(|r| r.id).collect();
    let mut starts = HashMap::new();
    for (handler, (rate, start)) in paced {
        let handed_out = candidates.iter().filter(|c| c.handler_id == handler && leased.contains(&c.id)).count();
        if handed_out > 0 {
            Handler::pace(conn, handler, start + rate.interval() * u32::try_from(handed_out).unwrap_or(u32::MAX))?;
            starts.insert(handler, start);
        }
    }
    Ok((leased, starts))
}

/// The rate-limited handlers of a claim: each one's limit and first start time.
type Paced = HashMap<i64, (RateLimit, NaiveDateTime)>;

/// SQLite: the first `limit` deliveries of all the handlers with
/// room, in due order (see [`ROOMS`]); and of each rate-limited
/// handler among them, its limit and first start time.
fn pick(
    conn: &mut Read<'_>,
    limits: &ClaimLimits,
    at: NaiveDateTime,
    ahead: NaiveDateTime,
) -> QueryResult<(Vec<Candidate>, Paced)> {
    let mut rooms: Vec<Room> = cached(ROOMS)
        .bind::<BigInt, _>(limits.limit)
        .bind::<BigInt, _>(limits.per_handler)
        .bind::<Text, _>(&limits.busy)
        .bind::<Timestamp, _>(at)
        .bind::<Timestamp, _>(ahead)
        .load(conn.db())?;
    // Handlers whose due work is oldest first: once `limit` are picked, a
    // handler whose first due row is later than all of them has nothing to
    // add, nor has any after it.
    rooms.sort_unstable_by_key(|r| (r.first_due, r.id));
    let limit = usize::try_from(limits.limit).unwrap_or(0);
    let mut picked: Vec<Candidate> = Vec::new();
    let mut paced = HashMap::new();
    for room in rooms {
        if picked.len() >= limit && picked.last().is_none_or(|last| last.next_attempt_at < room.first_due) {
            break;
        }
        let mut room_left = room.room;
        if let Some(rate) = room.rate_limit_milli.and_then(RateLimit::from_milli) {
            let start = room.rate_next.map_or(at, |next| next.max(at));
            room_left = room_left.min(start_times_before(rate, start, ahead));
            paced.insert(room.id, (rate, start));
        }
        let candidates: Vec<Candidate> = cached(CANDIDATES)
            .bind::<BigInt, _>(room.id)
            .bind::<Timestamp, _>(at)
            .bind::<BigInt, _>(room_left)
            .load(conn.db())?;
        picked.extend(candidates);
        picked.sort_unstable_by_key(|c| (c.next_attempt_at, c.id));
        picked.truncate(limit);
    }
    Ok((picked, paced))
}

/// How many start times `rate` gives from `start` (one, then one interval
/// apart) before `end`: as PostgreSQL's claim counts them.
fn start_times_before(rate: RateLimit, start: NaiveDateTime, end: NaiveDateTime) -> i64 {
    let window = (end - start).num_microseconds().unwrap_or(0);
    if window <= 0 {
        return 0;
    }
    // ceil(window × rate), in microseconds and thousandths.
    let product = i128::from(window) * i128::from(rate.milli());
    i64::try_from((product + 999_999_999) / 1_000_000_000).unwrap_or(i64::MAX)
}

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

use std::sync::LazyLock;

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{
    DbConnection,
    deliveries::{Delivery, INTERRUPTED, PARKED},
    now,
    prepared::{Sql, cached, id_list},
};
use crate::domain::{HandlerStatus, HandlerType};

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
    #[diesel(sql_type = Integer)]
    pub timeout_ms: i32,
    #[diesel(sql_type = Text, deserialize_as = super::text::Checked<HandlerStatus>)]
    pub handler_status: HandlerStatus,
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

/// The handlers that may take deliveries now, each with its room: the
/// per-handler limit `{per_handler}` less what it has in flight (`{busy}`,
/// from the JSON map), at most the claim's `{limit}`; only those with
/// something due (one probe of the due index, which is by handler). A
/// handler at its limit is not looked at further, however long its backlog.
/// Every status counts: a delivery of a handler disabled a moment ago is
/// still claimed, and its attempt ends it.
const ROOM: &str = "
    SELECT h.id AS id, {least}({limit}, {per_handler} - {busy}) AS room
    FROM handlers h
    WHERE {per_handler} - {busy} > 0
      AND (SELECT 1 FROM deliveries u
           WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= {now}
           ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1";

/// Rule 3 for the delivery `c`: no handler before it in its event's chain
/// (priority, then id) is still waiting for its first attempt to end.
const CHAIN_CLEAR: &str = "NOT EXISTS (
        SELECT 1 FROM deliveries q
        WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
          AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id)))";

/// A handler's first `{room}` deliveries it may take, in due order (the due
/// index's): due, not waiting on a delivery of an earlier event about the
/// same object in the same ordering group, whichever its handler (rule 4;
/// one probe of `deliveries_object`), and for a first attempt, not waiting on a
/// handler earlier in the event's chain (rule 3; a parked delivery is not due,
/// so this only confirms it). Each row looked at costs a few index probes, and
/// only this handler's rows are looked at.
static CANDIDATES: LazyLock<String> = LazyLock::new(|| CANDIDATES_TEXT.replace("{chain_clear}", CHAIN_CLEAR));
const CANDIDATES_TEXT: &str = "
    SELECT c.id, c.next_attempt_at, c.state = 'in_flight' AS lease_ran_out
    FROM deliveries c
    WHERE c.handler_id = {handler} AND c.state IN ('pending', 'in_flight') AND c.next_attempt_at <= {now}
      AND NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.ordering_key = c.ordering_key AND p.entity = c.entity AND p.object_id = c.object_id
          AND p.event_id < c.event_id AND p.state IN ('pending', 'in_flight'))
      AND (c.first_attempt_done OR {chain_clear})
    ORDER BY c.next_attempt_at, c.id
    LIMIT {room}";

/// Makes due at `$1` the parked deliveries whose turn has come ({events}:
/// of some events, or of all): those of the next handler of a chain whose
/// first attempt before it ended, was cancelled or deleted. On PostgreSQL a
/// row another transaction holds is skipped, not waited for: it is being
/// cancelled or deleted, or made due by another; waiting could deadlock with
/// a cancellation that locks the rows in another order.
static UNPARK: LazyLock<String> = LazyLock::new(|| UNPARK_TEXT.replace("{chain_clear}", CHAIN_CLEAR));
const UNPARK_TEXT: &str = "
    UPDATE deliveries SET next_attempt_at = $1
    WHERE id IN (
      SELECT c.id FROM deliveries c
      WHERE {events} c.state = 'pending' AND NOT c.first_attempt_done AND c.next_attempt_at = {parked}
        AND {chain_clear}
      {skip_locked})";
static UNPARK_EVENTS: LazyLock<Sql> =
    LazyLock::new(|| Sql::new(&UNPARK.replace("{events}", "c.event_id IN JSON($2) AND").replace("{parked}", "$3")));
static UNPARK_ALL: LazyLock<Sql> =
    LazyLock::new(|| Sql::new(&UNPARK.replace("{events}", "").replace("{parked}", "$2")));

/// Why a taken-over attempt has no result.
const TAKEN_OVER: &str =
    "'its lease ran out before a result was recorded (its process was killed or stopped answering); attempted again'";

/// SQLite: the lease of the picked rows `$4` (a JSON array) to `$1` until
/// `$2`, `$3` being now. The claim counts the attempt (so one cut off is
/// still counted, and its repeat has the next number).
static LEASE_SQLITE: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, lease_owner = $1, lease_until = $2,
             next_attempt_at = $2, updated_at = $3
         WHERE id IN (
           SELECT id FROM deliveries
           WHERE id IN JSON($4) AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3)
         RETURNING id",
    )
});

/// SQLite: the picked rows `$1` (a JSON array) whose lease ran out, logged
/// as interrupted before they are leased again.
static TAKEN_OVER_SQLITE: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(&format!("{} WHERE d.id IN JSON($1) AND d.state = 'in_flight'", INTERRUPTED.replace("{why}", TAKEN_OVER)))
});

/// What an attempt needs of the claimed rows (SQLite: after the lease).
const LOAD_COLUMNS: &str = "d.id, d.event_id, d.handler_id, d.webhook_id, d.entity, d.object_id, {attempts},
           d.max_attempts, d.first_attempt_done, e.events_id, e.payload, h.handler_type, h.target, h.secret,
           h.timeout_ms, h.status AS handler_status";
static LOAD_SQLITE: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(&format!(
        "SELECT {} FROM deliveries d JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
         WHERE d.id IN JSON($1) ORDER BY d.id",
        LOAD_COLUMNS.replace("{attempts}", "d.attempts")
    ))
});

/// PostgreSQL: one round trip, the lease and the load together, a statement
/// in a transaction of its own. Each handler with room is joined laterally to
/// its candidates, and the first `$4` of all in due order are picked. `=
/// ANY(ARRAY(…))`: primary-key lookups of the few picked rows, never a hash
/// join over the whole table; rows another process holds are skipped. The
/// claim counts the attempt; a picked row whose lease ran out is logged as
/// interrupted (the statement's parts all read the rows as they were before
/// it: `d.attempts` there is the cut-off attempt's number, `claimed`'s the
/// new one's).
/// `set_config(…, true)` makes this transaction's commit return before the WAL
/// reaches the disk, like [`crate::db::bookkeeping_transaction`] but without
/// its `BEGIN` and `COMMIT` round trips. It is evaluated with the rows
/// returned: a claim that takes nothing commits as usual, with next to nothing
/// to flush.
static CLAIM_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    let room = room_sql("LEAST", ["$4", "$5", "COALESCE(($6::jsonb ->> h.id::text)::bigint, 0)", "$3"]);
    let candidates = CANDIDATES.replace("{handler}", "r.id").replace("{now}", "$3").replace("{room}", "r.room");
    let pick = format!(
        "SELECT e.id FROM ({room}) AS r CROSS JOIN LATERAL ({candidates}) AS e ORDER BY e.next_attempt_at, e.id LIMIT $4"
    );
    let interrupted = INTERRUPTED
        .replace("{why}", TAKEN_OVER)
        .replace("FROM deliveries d", "FROM picked p JOIN deliveries d ON d.id = p.id");
    format!(
        "/* $1 owner, $2 the lease's end, $3 now, $4 limit, $5 per handler, $6 busy */
         WITH picked AS MATERIALIZED (
           SELECT id, state AS was FROM deliveries
           WHERE id = ANY(ARRAY({pick})) AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3
           FOR UPDATE SKIP LOCKED
         ), claimed AS (
           UPDATE deliveries d SET state = 'in_flight', attempts = d.attempts + 1, lease_owner = $1, lease_until = $2,
               next_attempt_at = $2, updated_at = $3
           FROM picked p WHERE d.id = p.id
           RETURNING d.id, d.attempts
         ), interrupted AS ({interrupted} WHERE p.was = 'in_flight')
         SELECT {columns}
         FROM claimed c JOIN deliveries d ON d.id = c.id JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
         WHERE set_config('synchronous_commit', 'off', true) = 'off'
         ORDER BY d.id",
        columns = LOAD_COLUMNS.replace("{attempts}", "c.attempts AS attempts")
    )
});

/// [`ROOM`] with the backend's two-argument minimum and its `[limit,
/// per_handler, busy, now]`.
fn room_sql(least: &str, [limit, per_handler, busy, now]: [&str; 4]) -> String {
    ROOM.replace("{least}", least)
        .replace("{limit}", limit)
        .replace("{per_handler}", per_handler)
        .replace("{busy}", busy)
        .replace("{now}", now)
}

/// SQLite has no lateral join (nor a `LIMIT` that reads a column of the outer
/// query): the handlers with room, then each one's candidates, are separate
/// statements in the claim's transaction, and the pick is made here.
///
/// The handlers come with when their due work fell due first (a second
/// probe), so that they can be looked at oldest first, and no further once
/// the claim is full. (On PostgreSQL, the same column in `ROOM` made the
/// planner's estimates, and the claim, several times worse.)
static ROOM_SQLITE: LazyLock<String> = LazyLock::new(|| {
    let room = room_sql(
        "MIN",
        ["$1", "$2", "COALESCE((SELECT value FROM json_each($3) WHERE key = CAST(h.id AS TEXT)), 0)", "$4"],
    );
    format!(
        "SELECT r.id, r.room,
                (SELECT u.next_attempt_at FROM deliveries u
                 WHERE u.handler_id = r.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= $4
                 ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) AS first_due
         FROM ({room}) AS r"
    )
    // `?N` is parameter N wherever it first appears; `$4` here would be
    // numbered 1, being first in the text (see `prepared`).
    .replace('$', "?")
});
static CANDIDATES_SQLITE: LazyLock<String> =
    LazyLock::new(|| CANDIDATES.replace("{handler}", "$1").replace("{now}", "$2").replace("{room}", "$3"));

#[derive(QueryableByName)]
struct Room {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    room: i64,
    #[diesel(sql_type = Timestamp)]
    first_due: NaiveDateTime,
}

#[derive(QueryableByName)]
struct Candidate {
    #[diesel(sql_type = BigInt)]
    id: i64,
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

impl Delivery {
    /// Claims due deliveries for `owner` until `lease_until`. On PostgreSQL the
    /// rows are locked `FOR UPDATE SKIP LOCKED`, so processes sharing the
    /// database never claim the same delivery.
    pub fn claim(
        conn: &mut DbConnection,
        owner: &str,
        lease_until: NaiveDateTime,
        limits: &ClaimLimits,
    ) -> QueryResult<Vec<Claimed>> {
        let at = now();
        if let DbConnection::Postgres(_) = conn {
            return cached(CLAIM_POSTGRES.as_str())
                .bind::<Text, _>(owner)
                .bind::<Timestamp, _>(lease_until)
                .bind::<Timestamp, _>(at)
                .bind::<BigInt, _>(limits.limit)
                .bind::<BigInt, _>(limits.per_handler)
                .bind::<Text, _>(&limits.busy)
                .load::<Claimed>(conn);
        }
        let ids: Vec<i64> = crate::db::bookkeeping_transaction(conn, |conn| {
            let candidates = pick_sqlite(conn, limits, at)?;
            if candidates.is_empty() {
                return Ok(Vec::new());
            }
            let taken_over: Vec<i64> = candidates.iter().filter(|c| c.lease_ran_out).map(|c| c.id).collect();
            if !taken_over.is_empty() {
                TAKEN_OVER_SQLITE.on(conn).bind::<Text, _>(id_list(&taken_over)).execute(conn)?;
            }
            let picked: Vec<i64> = candidates.iter().map(|c| c.id).collect();
            LEASE_SQLITE
                .on(conn)
                .bind::<Text, _>(owner)
                .bind::<Timestamp, _>(lease_until)
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(id_list(&picked))
                .load::<IdRow>(conn)
        })?
        .into_iter()
        .map(|r| r.id)
        .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        LOAD_SQLITE.on(conn).bind::<Text, _>(id_list(&ids)).load(conn)
    }

    /// Makes due now the parked deliveries of the events `event_ids` whose
    /// turn has come; how many. In the transaction that ended (or cancelled,
    /// or deleted) a first attempt of these events.
    pub fn unpark(conn: &mut DbConnection, event_ids: &[i64]) -> QueryResult<usize> {
        if event_ids.is_empty() {
            return Ok(0);
        }
        UNPARK_EVENTS
            .on(conn)
            .bind::<Timestamp, _>(now())
            .bind::<Text, _>(id_list(event_ids))
            .bind::<Timestamp, _>(PARKED)
            .execute(conn)
    }

    /// [`Delivery::unpark`] for every event: a look over all parked
    /// deliveries, at a start and now and then on PostgreSQL, where two
    /// processes ending an event's attempts at once may each have seen the
    /// other's first attempt as still running.
    pub fn unpark_all(conn: &mut DbConnection) -> QueryResult<usize> {
        UNPARK_ALL.on(conn).bind::<Timestamp, _>(now()).bind::<Timestamp, _>(PARKED).execute(conn)
    }
}

/// SQLite: the first `limit` deliveries of all the handlers with
/// room, in due order (see [`ROOM_SQLITE`]).
fn pick_sqlite(conn: &mut DbConnection, limits: &ClaimLimits, at: NaiveDateTime) -> QueryResult<Vec<Candidate>> {
    let mut rooms: Vec<Room> = cached(ROOM_SQLITE.as_str())
        .bind::<BigInt, _>(limits.limit)
        .bind::<BigInt, _>(limits.per_handler)
        .bind::<Text, _>(&limits.busy)
        .bind::<Timestamp, _>(at)
        .load(conn)?;
    // Handlers whose due work is oldest first: once `limit` are picked, a
    // handler whose first due row is later than all of them has nothing to
    // add, nor has any after it.
    rooms.sort_unstable_by_key(|r| (r.first_due, r.id));
    let limit = usize::try_from(limits.limit).unwrap_or(0);
    let mut picked: Vec<Candidate> = Vec::new();
    for room in rooms {
        if picked.len() >= limit && picked.last().is_none_or(|last| last.next_attempt_at < room.first_due) {
            break;
        }
        let candidates: Vec<Candidate> = cached(CANDIDATES_SQLITE.as_str())
            .bind::<BigInt, _>(room.id)
            .bind::<Timestamp, _>(at)
            .bind::<BigInt, _>(room.room)
            .load(conn)?;
        picked.extend(candidates);
        picked.sort_unstable_by_key(|c| (c.next_attempt_at, c.id));
        picked.truncate(limit);
    }
    Ok(picked)
}

/// The claim's statements as they run, for the golden files (`db::golden`).
#[cfg(test)]
pub(super) fn statements() -> Vec<(&'static str, super::Backend, String)> {
    use super::Backend::{Postgres, Sqlite};
    let both = |name, sql: &Sql| {
        [(name, Sqlite, sql.text(Sqlite).to_owned()), (name, Postgres, sql.text(Postgres).to_owned())]
    };
    let mut all = vec![
        ("claim", Postgres, CLAIM_POSTGRES.clone()),
        ("claim_rooms", Sqlite, ROOM_SQLITE.clone()),
        ("claim_candidates", Sqlite, CANDIDATES_SQLITE.clone()),
        ("claim_lease", Sqlite, LEASE_SQLITE.text(Sqlite).to_owned()),
        ("claim_taken_over", Sqlite, TAKEN_OVER_SQLITE.text(Sqlite).to_owned()),
        ("claim_load", Sqlite, LOAD_SQLITE.text(Sqlite).to_owned()),
    ];
    all.extend(both("unpark_events", &UNPARK_EVENTS));
    all.extend(both("unpark_all", &UNPARK_ALL));
    all
}

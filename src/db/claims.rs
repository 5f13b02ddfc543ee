//! The dispatcher's claim (DESIGN §4): which due deliveries it may take now —
//! per-object order, the priority chain, per-handler room — leased to this
//! process in one statement, with what their attempts need.

use std::sync::LazyLock;

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{
    DbConnection,
    deliveries::Delivery,
    now,
    prepared::{Sql, cached, id_list},
};

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
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = Integer)]
    pub max_attempts: i32,
    #[diesel(sql_type = Text)]
    pub events_id: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
    #[diesel(sql_type = Text)]
    pub handler_type: String,
    #[diesel(sql_type = Text)]
    pub target: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
    #[diesel(sql_type = Integer)]
    pub timeout_ms: i32,
    #[diesel(sql_type = Text)]
    pub handler_status: String,
}

/// What the claim may take.
#[derive(Debug, Clone)]
pub struct ClaimLimits {
    /// The most deliveries to claim.
    pub limit: i64,
    /// The most deliveries of one handler in flight in this process.
    pub per_handler: i64,
    /// Handlers already at their concurrency limit in this process.
    pub saturated: Vec<i64>,
    /// Attempts in flight in this process, by handler (`{"12": 40}`).
    pub busy: String,
}

/// The rows a delivery may be claimed from: due, not waiting on an earlier
/// delivery of the same object for the same handler (rule 4), and for a first
/// attempt, not waiting on a handler earlier in the event's chain (rule 3).
/// `$3` is now; `{exclude}` drops saturated handlers. Each candidate costs a
/// few index probes, so they are looked at in due order only as far as
/// `{window}`: twice what the handlers with unfinished work have room for.
const ELIGIBLE: &str = "
    SELECT d.id, d.handler_id, d.next_attempt_at
    FROM deliveries d
    WHERE d.state IN ('pending', 'in_flight') AND d.next_attempt_at <= $3 {exclude}
      AND NOT EXISTS (
        SELECT 1 FROM deliveries p
        WHERE p.handler_id = d.handler_id AND p.entity = d.entity AND p.object_id = d.object_id
          AND p.id < d.id AND p.state IN ('pending', 'in_flight'))
      AND (d.first_attempt_done OR NOT EXISTS (
        SELECT 1 FROM deliveries c
        WHERE c.event_id = d.event_id AND c.state IN ('pending', 'in_flight') AND NOT c.first_attempt_done
          AND (c.priority < d.priority OR (c.priority = d.priority AND c.handler_id < d.handler_id))))
    ORDER BY d.next_attempt_at, d.id
    LIMIT {window}";

/// How many candidates to look at: twice the claim's limit `$6`, or twice the
/// room of the enabled handlers that have unfinished deliveries (the per-handler
/// limit `$7` less what each has in flight, `{busy}` of the map `$8`) when that
/// is less; at least `$5`. A handler near its limit with a long backlog would
/// otherwise fill a window of twice the limit with rows it cannot take: with
/// 10,000 pending, a claim of 22 rows took 0.89 ms on SQLite and 1.6 ms on
/// PostgreSQL, 0.36 and 0.95 ms with this window. Whether a handler has
/// unfinished work is one probe of `deliveries_object`; the `ORDER BY` (that
/// index's order) keeps PostgreSQL from reading the table up to the first match.
const WINDOW: &str = "
    {greatest}($5, 2 * {least}($6, (
      SELECT COALESCE(SUM({greatest}($7 - {busy}, 0)), 0) FROM handlers h
      WHERE h.status = 'enabled'
        AND (SELECT 1 FROM deliveries u WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight')
             ORDER BY u.handler_id, u.entity, u.object_id, u.id LIMIT 1) = 1)))";

/// Of the eligible rows, at most `$7` (the per-handler limit) less what the
/// handler has in flight already (`{busy}`, from the map `$8`), then the first `$6`.
const PICK: &str = "
    SELECT id FROM (
      SELECT id, handler_id, next_attempt_at,
             ROW_NUMBER() OVER (PARTITION BY handler_id ORDER BY next_attempt_at, id) AS n
      FROM ({eligible}) AS e
    ) AS r
    WHERE n <= $7 - {busy}
    ORDER BY next_attempt_at, id
    LIMIT $6";

/// The claim: leases the picked rows. `{pick}` is the picking query, placed
/// as the backend plans it best; `{lock}` skips rows another process holds.
const LEASE: &str = "
    UPDATE deliveries SET state = 'in_flight', lease_owner = $1, lease_until = $2, next_attempt_at = $2, updated_at = $3
    WHERE id IN (
      SELECT id FROM deliveries
      WHERE id {in_pick} AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3
      {lock})
    RETURNING id";

/// What an attempt needs of the claimed rows (`{claimed}`: their ids).
const LOAD: &str = "
    SELECT d.id, d.event_id, d.handler_id, d.webhook_id, d.entity, d.object_id, d.attempts, d.max_attempts,
           e.events_id, e.payload, h.handler_type, h.target, h.secret, h.timeout_ms, h.status AS handler_status
    FROM deliveries d JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
    WHERE d.id IN ({claimed})
    ORDER BY d.id";

/// The parts of the claim that differ between the backends.
struct Dialect {
    /// `AND …`: leaves out the saturated handlers (the JSON array `$4`).
    exclude: &'static str,
    /// What the handler `{id}` has in flight (from the JSON map `$8`).
    busy: &'static str,
    /// The two-argument maximum and minimum.
    greatest: &'static str,
    least: &'static str,
    /// Appended to the lease's row selection.
    lock: &'static str,
    /// How the lease's rows are matched to the picked ids (`{pick}`).
    in_pick: &'static str,
}

fn lease_sql(d: &Dialect) -> String {
    let window = WINDOW
        .replace("{busy}", &d.busy.replace("{id}", "h.id"))
        .replace("{greatest}", d.greatest)
        .replace("{least}", d.least);
    let eligible = ELIGIBLE.replace("{exclude}", d.exclude).replace("{window}", &window);
    let pick = PICK.replace("{eligible}", &eligible).replace("{busy}", &d.busy.replace("{id}", "r.handler_id"));
    let in_pick = d.in_pick.replace("{pick}", &pick);
    LEASE.replace("{in_pick}", &in_pick).replace("{lock}", d.lock)
}

/// PostgreSQL: one round trip, the lease and the load together, a statement
/// in a transaction of its own. `= ANY(ARRAY(…))`: primary-key lookups of the
/// few picked rows, never a hash join over the whole table; rows another
/// process holds are skipped. `set_config(…, true)` makes this transaction's
/// commit return before the WAL reaches the disk, like
/// [`crate::db::bookkeeping_transaction`] but without its `BEGIN` and `COMMIT`
/// round trips. It is evaluated with the rows returned: a claim that takes
/// nothing commits as usual, with next to nothing to flush.
static CLAIM_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    let lease = lease_sql(&Dialect {
        exclude: "AND NOT (d.handler_id IN (SELECT value::bigint FROM jsonb_array_elements_text($4::jsonb)))",
        busy: "COALESCE(($8::jsonb ->> {id}::text)::bigint, 0)",
        greatest: "GREATEST",
        least: "LEAST",
        lock: "FOR UPDATE SKIP LOCKED",
        in_pick: "= ANY(ARRAY({pick}))",
    });
    let load = LOAD.replace(
        "IN ({claimed})",
        "IN (SELECT id FROM claimed) AND set_config('synchronous_commit', 'off', true) = 'off'",
    );
    format!("WITH claimed AS ({lease}) {load}")
});

/// SQLite: the lease, then the load of the leased ids (`$1`, a JSON array).
static CLAIM_SQLITE: LazyLock<String> = LazyLock::new(|| {
    lease_sql(&Dialect {
        exclude: "AND d.handler_id NOT IN (SELECT value FROM json_each($4))",
        busy: "COALESCE((SELECT value FROM json_each($8) WHERE key = CAST({id} AS TEXT)), 0)",
        greatest: "MAX",
        least: "MIN",
        lock: "",
        in_pick: "IN ({pick})",
    })
});
static LOAD_SQLITE: LazyLock<Sql> = LazyLock::new(|| Sql::new(&LOAD.replace("IN ({claimed})", "IN JSON($1)")));

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
        // At least this many candidates (see `WINDOW`), so that rows the
        // room does not count (a handler disabled a moment ago) still go.
        let at_least = limits.limit.min(32);
        let saturated = serde_json::to_string(&limits.saturated).unwrap_or_else(|_| "[]".into());
        let sql = match conn {
            DbConnection::Postgres(_) => CLAIM_POSTGRES.as_str(),
            DbConnection::Sqlite(_) => CLAIM_SQLITE.as_str(),
        };
        let lease = cached(sql)
            .bind::<Text, _>(owner)
            .bind::<Timestamp, _>(lease_until)
            .bind::<Timestamp, _>(at)
            .bind::<Text, _>(&saturated)
            .bind::<BigInt, _>(at_least)
            .bind::<BigInt, _>(limits.limit)
            .bind::<BigInt, _>(limits.per_handler)
            .bind::<Text, _>(&limits.busy);
        match conn {
            DbConnection::Postgres(_) => lease.load::<Claimed>(conn),
            DbConnection::Sqlite(_) => {
                let ids: Vec<i64> = crate::db::bookkeeping_transaction(conn, |conn| lease.load::<IdRow>(conn))?
                    .into_iter()
                    .map(|r| r.id)
                    .collect();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                LOAD_SQLITE.on(conn).bind::<Text, _>(id_list(&ids)).load(conn)
            }
        }
    }
}

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
/// `$3` is now; `{exclude}` drops saturated handlers.
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
    LIMIT $5";

/// Of the eligible rows, at most `$6` (the per-handler limit) less what the
/// handler has in flight already (`{busy}`, from the map `$7`), then the first `$8`.
const PICK: &str = "
    SELECT id FROM (
      SELECT id, handler_id, next_attempt_at,
             ROW_NUMBER() OVER (PARTITION BY handler_id ORDER BY next_attempt_at, id) AS n
      FROM ({eligible}) AS e
    ) AS r
    WHERE n <= $6 - {busy}
    ORDER BY next_attempt_at, id
    LIMIT $8";

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

fn lease_sql(exclude: &str, busy: &str, lock: &str, in_pick: &str) -> String {
    let eligible = ELIGIBLE.replace("{exclude}", exclude);
    let pick = PICK.replace("{eligible}", &eligible).replace("{busy}", busy);
    let in_pick = in_pick.replace("{pick}", &pick);
    LEASE.replace("{in_pick}", &in_pick).replace("{lock}", lock)
}

/// PostgreSQL: one round trip, the lease and the load together.
/// `= ANY(ARRAY(…))`: primary-key lookups of the few picked rows, never a
/// hash join over the whole table; rows another process holds are skipped.
static CLAIM_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    let lease = lease_sql(
        "AND NOT (d.handler_id IN (SELECT value::bigint FROM jsonb_array_elements_text($4::jsonb)))",
        "COALESCE(($7::jsonb ->> r.handler_id::text)::bigint, 0)",
        "FOR UPDATE SKIP LOCKED",
        "= ANY(ARRAY({pick}))",
    );
    format!("WITH claimed AS ({lease}) {}", LOAD.replace("{claimed}", "SELECT id FROM claimed"))
});

/// SQLite: the lease, then the load of the leased ids (`$1`, a JSON array).
static CLAIM_SQLITE: LazyLock<String> = LazyLock::new(|| {
    lease_sql(
        "AND d.handler_id NOT IN (SELECT value FROM json_each($4))",
        "COALESCE((SELECT value FROM json_each($7) WHERE key = CAST(r.handler_id AS TEXT)), 0)",
        "",
        "IN ({pick})",
    )
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
        // Enough candidates that a handler at its limit does not starve the others.
        let scan = (limits.limit * 2).max(64);
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
            .bind::<BigInt, _>(scan)
            .bind::<BigInt, _>(limits.per_handler)
            .bind::<Text, _>(&limits.busy)
            .bind::<BigInt, _>(limits.limit);
        match conn {
            DbConnection::Postgres(_) => crate::db::bookkeeping_transaction(conn, |conn| lease.load::<Claimed>(conn)),
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

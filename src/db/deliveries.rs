//! The `deliveries` table: one event for one handler, and the claims of the
//! dispatcher (DESIGN §4). Claims are leases: a delivery being attempted is
//! `in_flight` with `next_attempt_at` = the lease's end, so one that outlives
//! its lease (its process died) is due again like any pending one.

use chrono::NaiveDateTime;
use std::sync::LazyLock;

use diesel::{
    prelude::*,
    sql_types::{BigInt, Bool, Integer, Text, Timestamp},
};
use serde::Serialize;

use super::{
    DbConnection, now,
    prepared::{Sql, cached, id_list},
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
    pub state: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub first_attempt_done: bool,
    pub next_attempt_at: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

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

/// Ends attempts for good: the deliveries `$3` (a JSON array of ids) leased by `$4`.
static END_ALL: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "UPDATE deliveries SET state = $1, attempts = attempts + 1, first_attempt_done = TRUE, next_attempt_at = $2,
             lease_owner = NULL, lease_until = NULL, updated_at = $2
         WHERE id IN JSON($3) AND lease_owner = $4 AND state = 'in_flight'",
    )
});

/// Which of the deliveries `$1` (a JSON array of ids) exist, with their handler's status.
static PRESENT: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "SELECT d.id, h.status = 'enabled' AS enabled
         FROM deliveries d JOIN handlers h ON h.id = d.handler_id
         WHERE d.id IN JSON($1)",
    )
});

/// The change that hands a claimed delivery back: pending, unleased, due at `$at`.
macro_rules! back_to_pending {
    ($at:expr) => {
        (
            deliveries::state.eq("pending"),
            deliveries::lease_owner.eq(None::<String>),
            deliveries::lease_until.eq(None::<NaiveDateTime>),
            deliveries::next_attempt_at.eq($at),
            deliveries::updated_at.eq($at),
        )
    };
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

impl Delivery {
    pub fn for_event(conn: &mut DbConnection, event_id: i64) -> QueryResult<Vec<Delivery>> {
        deliveries::table
            .filter(deliveries::event_id.eq(event_id))
            .order((deliveries::priority.asc(), deliveries::handler_id.asc()))
            .load(conn)
    }

    pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Delivery> {
        deliveries::table.find(id).first(conn)
    }

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

    /// Extends the leases of everything `owner` is attempting.
    pub fn renew_leases(conn: &mut DbConnection, owner: &str, lease_until: NaiveDateTime) -> QueryResult<usize> {
        diesel::update(
            deliveries::table
                .filter(unfinished())
                .filter(deliveries::lease_owner.eq(owner))
                .filter(deliveries::state.eq("in_flight")),
        )
        .set((deliveries::lease_until.eq(lease_until), deliveries::next_attempt_at.eq(lease_until)))
        .execute(conn)
    }

    /// Hands claimed deliveries back, due at once (for another process or the next start).
    pub fn release(conn: &mut DbConnection, owner: &str, ids: &[i64]) -> QueryResult<usize> {
        let at = now();
        diesel::update(
            deliveries::table
                .filter(deliveries::id.eq_any(ids))
                .filter(deliveries::lease_owner.eq(owner))
                .filter(deliveries::state.eq("in_flight")),
        )
        .set(back_to_pending!(at))
        .execute(conn)
    }

    /// Hands back everything `owner` still has in flight (at a stop).
    pub fn release_owned(conn: &mut DbConnection, owner: &str) -> QueryResult<usize> {
        let at = now();
        diesel::update(
            deliveries::table
                .filter(unfinished())
                .filter(deliveries::lease_owner.eq(owner))
                .filter(deliveries::state.eq("in_flight")),
        )
        .set(back_to_pending!(at))
        .execute(conn)
    }

    /// After a crash of the only process (SQLite): every attempt cut off is due again.
    pub fn release_all(conn: &mut DbConnection) -> QueryResult<usize> {
        let at = now();
        diesel::update(deliveries::table.filter(deliveries::state.eq("in_flight")))
            .set(back_to_pending!(at))
            .execute(conn)
    }

    /// Writes the end of an attempt, if `owner` still holds the lease.
    pub fn finish(conn: &mut DbConnection, owner: &str, id: i64, end: &Finish) -> QueryResult<bool> {
        let at = now();
        let n = diesel::update(
            deliveries::table
                .find(id)
                .filter(deliveries::lease_owner.eq(owner))
                .filter(deliveries::state.eq("in_flight")),
        )
        .set((
            deliveries::state.eq(end.state),
            deliveries::attempts.eq(end.attempts),
            deliveries::first_attempt_done.eq(true),
            deliveries::next_attempt_at.eq(end.next_attempt_at.unwrap_or(at)),
            deliveries::lease_owner.eq(None::<String>),
            deliveries::lease_until.eq(None::<NaiveDateTime>),
            deliveries::updated_at.eq(at),
        ))
        .execute(conn)?;
        Ok(n == 1)
    }

    /// Ends attempts of `owner` for good (succeeded, failed, cancelled), many at once.
    pub fn end_all(conn: &mut DbConnection, owner: &str, ids: &[i64], state: &str) -> QueryResult<usize> {
        END_ALL
            .on(conn)
            .bind::<Text, _>(state)
            .bind::<Timestamp, _>(now())
            .bind::<Text, _>(id_list(ids))
            .bind::<Text, _>(owner)
            .execute(conn)
    }

    /// Of the deliveries `ids`, those still there, each with whether its
    /// handler is enabled now (the recorder's look before it writes).
    pub fn still_present(conn: &mut DbConnection, ids: &[i64]) -> QueryResult<Vec<(i64, bool)>> {
        #[derive(QueryableByName)]
        struct Present {
            #[diesel(sql_type = BigInt)]
            id: i64,
            #[diesel(sql_type = Bool)]
            enabled: bool,
        }
        let rows: Vec<Present> = PRESENT.on(conn).bind::<Text, _>(id_list(ids)).load(conn)?;
        Ok(rows.into_iter().map(|r| (r.id, r.enabled)).collect())
    }

    /// Queues a finished delivery again for one more attempt, outside the
    /// priority chain. `Ok(None)` when it is still pending or in flight.
    pub fn retry(conn: &mut DbConnection, id: i64) -> QueryResult<Option<Delivery>> {
        crate::db::write_transaction(conn, |conn| {
            let delivery = Self::find(conn, id)?;
            if !matches!(delivery.state.as_str(), "succeeded" | "failed" | "cancelled") {
                return Ok(None);
            }
            let at = now();
            diesel::update(deliveries::table.find(id).filter(deliveries::state.eq(&delivery.state)))
                .set((
                    deliveries::state.eq("pending"),
                    deliveries::max_attempts.eq(delivery.attempts + 1),
                    deliveries::first_attempt_done.eq(true),
                    deliveries::next_attempt_at.eq(at),
                    deliveries::updated_at.eq(at),
                ))
                .execute(conn)?;
            Self::find(conn, id).map(Some)
        })
    }

    /// Cancels a handler's pending deliveries, each logged as `cancelled`.
    pub fn cancel_pending_of_handler(conn: &mut DbConnection, handler_id: i64, reason: &str) -> QueryResult<usize> {
        let at = now();
        crate::db::write_transaction(conn, |conn| {
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
            .execute(conn)?;
            diesel::update(
                deliveries::table.filter(deliveries::handler_id.eq(handler_id)).filter(deliveries::state.eq("pending")),
            )
            .set((deliveries::state.eq("cancelled"), deliveries::updated_at.eq(at)))
            .execute(conn)
        })
    }

    /// How many deliveries are waiting or being attempted.
    pub fn count_unfinished(conn: &mut DbConnection) -> QueryResult<i64> {
        deliveries::table.filter(unfinished()).count().get_result(conn)
    }

    /// When the next unfinished delivery is due (the first entry of the due index), if any.
    pub fn next_due(conn: &mut DbConnection) -> QueryResult<Option<NaiveDateTime>> {
        #[derive(QueryableByName)]
        struct Due {
            #[diesel(sql_type = Timestamp)]
            next_attempt_at: NaiveDateTime,
        }
        cached(
            "SELECT next_attempt_at FROM deliveries WHERE state IN ('pending', 'in_flight')
             ORDER BY next_attempt_at LIMIT 1",
        )
        .get_result::<Due>(conn)
        .optional()
        .map(|due| due.map(|d| d.next_attempt_at))
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
    pub state: &'static str,
    pub attempts: i32,
    pub next_attempt_at: Option<NaiveDateTime>,
}

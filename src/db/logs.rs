//! The `execution_logs` table: one row per delivery attempt, and the queries
//! of the Execution Logs tab, the details page, the object timeline and the
//! handler list's health figures.

use std::collections::HashMap;

use chrono::{NaiveDateTime, TimeDelta, Timelike};
use diesel::{
    prelude::*,
    sql_types::{BigInt, Integer, Nullable, Text, Timestamp},
};
use serde::Serialize;

use crate::domain::Outcome;

use super::{
    DbConnection, Read, Write, now,
    prepared::cached,
    schema::{execution_logs, handler_stats},
    text::contains_pattern,
};

#[derive(Debug, Clone, Queryable, Identifiable, Serialize)]
#[diesel(table_name = execution_logs)]
pub struct ExecutionLog {
    pub id: i64,
    pub delivery_id: i64,
    pub handler_id: i64,
    pub event_id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    pub attempt: i32,
    pub started_at: NaiveDateTime,
    pub duration_ms: i64,
    #[diesel(deserialize_as = String)]
    pub outcome: Outcome,
    pub status_code: Option<i32>,
    pub request_body: String,
    pub request_headers: String,
    pub response_body: String,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
    /// The URL or script it was sent to (`None`: recorded before targets were).
    pub target: Option<String>,
    /// Sent by hand from the handler's page: no delivery, outside ordering.
    pub test: bool,
}

/// One attempt to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = execution_logs)]
pub struct NewExecutionLog {
    pub delivery_id: i64,
    pub handler_id: i64,
    pub event_id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    pub attempt: i32,
    pub started_at: NaiveDateTime,
    pub duration_ms: i64,
    /// [`Outcome::as_str`].
    pub outcome: &'static str,
    pub status_code: Option<i32>,
    pub request_body: String,
    pub request_headers: String,
    pub response_body: String,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
    /// The URL or script it was sent to (none for a cancellation).
    pub target: Option<String>,
    pub test: bool,
}

impl NewExecutionLog {
    /// Many rows: on PostgreSQL in one statement per 500 (one round trip, well
    /// within the limit on bound parameters); on SQLite, with no round trips
    /// to save, one prepared insert per row.
    pub fn insert_all(conn: &mut Write<'_>, rows: &[NewExecutionLog]) -> QueryResult<()> {
        match conn.db() {
            DbConnection::Postgres(pg) => {
                for chunk in rows.chunks(500) {
                    diesel::insert_into(execution_logs::table).values(chunk).execute(pg)?;
                }
            }
            DbConnection::Sqlite(_) => {
                for row in rows {
                    row.insert_prepared(conn)?;
                }
            }
        }
        Ok(())
    }

    /// One row, by itself; its id.
    pub fn insert_returning_id(&self, conn: &mut Write<'_>) -> QueryResult<i64> {
        diesel::insert_into(execution_logs::table).values(self).returning(execution_logs::id).get_result(conn.db())
    }

    fn insert_prepared(&self, conn: &mut Write<'_>) -> QueryResult<()> {
        cached(
            "INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
                 started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body,
                 error, next_attempt_at, target, test)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
        )
        .bind::<BigInt, _>(self.delivery_id)
        .bind::<BigInt, _>(self.handler_id)
        .bind::<BigInt, _>(self.event_id)
        .bind::<Text, _>(&self.events_id)
        .bind::<Text, _>(&self.entity)
        .bind::<Text, _>(&self.object_id)
        .bind::<Integer, _>(self.attempt)
        .bind::<Timestamp, _>(self.started_at)
        .bind::<BigInt, _>(self.duration_ms)
        .bind::<Text, _>(self.outcome)
        .bind::<Nullable<Integer>, _>(self.status_code)
        .bind::<Text, _>(&self.request_body)
        .bind::<Text, _>(&self.request_headers)
        .bind::<Text, _>(&self.response_body)
        .bind::<Nullable<Text>, _>(&self.error)
        .bind::<Nullable<Timestamp>, _>(self.next_attempt_at)
        .bind::<Nullable<Text>, _>(&self.target)
        .bind::<diesel::sql_types::Bool, _>(self.test)
        .execute(conn.db())
        .map(drop)
    }
}

/// Filters of the Execution Logs tab; every part optional.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub handler_id: Option<i64>,
    pub events_id: Option<String>,
    pub outcome: Option<Outcome>,
    /// Text searched for in what the administrator sees of an attempt: the
    /// response body or the script's output, and the error. A page of a
    /// search looks at [`SEARCH_WINDOW`] attempts at most.
    pub q: Option<String>,
    pub object_id: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
    pub delivery_id: Option<i64>,
    /// Where the attempt's delivery stands now (pending and waiting alike:
    /// a first attempt not yet made).
    pub delivery_state: Option<super::delivery_list::StandingFilter>,
}

/// Where a page of the log starts: the newest, or older/newer than a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cursor {
    #[default]
    Newest,
    Before(i64),
    After(i64),
}

/// A page of the log, newest first, with whether older and newer rows exist.
#[derive(Debug, Clone)]
pub struct LogPage {
    pub rows: Vec<ExecutionLog>,
    pub older: bool,
    pub newer: bool,
    /// A text search that found fewer rows than a page in its window: the
    /// oldest id it looked at (older attempts are searched from there on).
    pub searched_to: Option<i64>,
    /// The same, going to newer attempts: the newest id it looked at.
    pub searched_up_to: Option<i64>,
    /// Where the page started.
    pub cursor: Cursor,
}

/// The most attempts one page of a text search looks at: the search reads
/// bodies of up to 64 KiB that no index holds, so a rare text would
/// otherwise read the whole history for one page. The page says where it
/// stopped, and the next one goes on from there (docs/PERFORMANCE.md).
pub const SEARCH_WINDOW: i64 = 100_000;

/// `LIKE` pattern for a literal text.
impl ExecutionLog {
    fn filtered(filter: &LogFilter) -> execution_logs::BoxedQuery<'static, super::MultiBackend> {
        let mut q = execution_logs::table.into_boxed();
        if let Some(h) = filter.handler_id {
            q = q.filter(execution_logs::handler_id.eq(h));
        }
        if let Some(e) = &filter.events_id {
            q = q.filter(execution_logs::events_id.eq(e.clone()));
        }
        if let Some(o) = filter.outcome {
            q = q.filter(execution_logs::outcome.eq(o.as_str()));
        }
        if let Some(text) = &filter.q {
            let pattern = contains_pattern(text);
            q = q.filter(
                execution_logs::response_body
                    .like(pattern.clone())
                    .escape('\\')
                    .or(execution_logs::error.like(pattern).escape('\\')),
            );
        }
        if let Some(o) = &filter.object_id {
            q = q.filter(execution_logs::object_id.eq(o.clone()));
        }
        if let Some(from) = filter.from {
            q = q.filter(execution_logs::started_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(execution_logs::started_at.lt(to));
        }
        if let Some(d) = filter.delivery_id {
            q = q.filter(execution_logs::delivery_id.eq(d));
        }
        if let Some(state) = filter.delivery_state {
            let of_state = super::schema::deliveries::table
                .filter(super::delivery_list::standing_rows!(state))
                .select(super::schema::deliveries::id);
            q = q.filter(execution_logs::delivery_id.eq_any(of_state));
        }
        q
    }

    /// One page, newest first (keyset pagination: fast however deep). A
    /// text search looks at the [`SEARCH_WINDOW`] attempts from the cursor on.
    pub fn page(conn: &mut Read<'_>, filter: &LogFilter, cursor: Cursor, limit: i64) -> QueryResult<LogPage> {
        let mut q = Self::filtered(filter);
        // A text search's window: the ids it may look at, and whether older
        // (or newer) attempts lie beyond it.
        let (mut bottom_beyond, mut top_beyond) = (None, None);
        if filter.q.is_some() {
            let (first, last) = Self::id_range(conn)?;
            match cursor {
                Cursor::Newest | Cursor::Before(_) => {
                    let top = match cursor {
                        Cursor::Before(id) => id.saturating_sub(1),
                        _ => last,
                    };
                    let bottom = top.saturating_sub(SEARCH_WINDOW - 1).max(first);
                    q = q.filter(execution_logs::id.ge(bottom));
                    bottom_beyond = (bottom > first).then_some(bottom);
                }
                Cursor::After(id) => {
                    let top = id.saturating_add(SEARCH_WINDOW);
                    q = q.filter(execution_logs::id.le(top));
                    top_beyond = (top < last).then_some(top);
                }
            }
        }
        let mut rows: Vec<Self> = match cursor {
            Cursor::Newest => q.order(execution_logs::id.desc()).limit(limit + 1).load(conn.db())?,
            Cursor::Before(id) => {
                q.filter(execution_logs::id.lt(id)).order(execution_logs::id.desc()).limit(limit + 1).load(conn.db())?
            }
            Cursor::After(id) => {
                let mut up: Vec<Self> = q
                    .filter(execution_logs::id.gt(id))
                    .order(execution_logs::id.asc())
                    .limit(limit + 1)
                    .load(conn.db())?;
                let newer = up.len() as i64 > limit;
                up.truncate(limit as usize);
                up.reverse();
                // The window ran out before the page filled: newer attempts may match too.
                let searched_up_to = top_beyond.filter(|_| !newer);
                return Ok(LogPage { rows: up, older: true, newer, searched_to: None, searched_up_to, cursor });
            }
        };
        let older = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        // The window ran out before the page filled: older attempts may match too.
        let searched_to = bottom_beyond.filter(|_| !older);
        Ok(LogPage { rows, older, newer: cursor != Cursor::Newest, searched_to, searched_up_to: None, cursor })
    }

    /// The oldest and the newest attempt's ids (0 and 0 when there is none).
    fn id_range(conn: &mut Read<'_>) -> QueryResult<(i64, i64)> {
        let (first, last): (Option<i64>, Option<i64>) = execution_logs::table
            .select((diesel::dsl::min(execution_logs::id), diesel::dsl::max(execution_logs::id)))
            .first(conn.db())?;
        Ok((first.unwrap_or(0), last.unwrap_or(0)))
    }

    /// Like [`ExecutionLog::page`], of failed attempts only (every outcome
    /// but success and cancelled).
    pub fn page_failures(conn: &mut Read<'_>, filter: &LogFilter, cursor: Cursor, limit: i64) -> QueryResult<LogPage> {
        let mut pages: Vec<ExecutionLog> = Vec::new();
        let (mut older, mut newer, mut searched_to, mut searched_up_to) = (false, false, None, None);
        // One window for every outcome: a search's newest page starts below the same top.
        let asked = cursor;
        let cursor = match cursor {
            Cursor::Newest if filter.q.is_some() => Cursor::Before(Self::id_range(conn)?.1.saturating_add(1)),
            other => other,
        };
        for outcome in Outcome::ALL.iter().filter(|o| o.is_failure()) {
            let f = LogFilter { outcome: Some(*outcome), ..filter.clone() };
            let page = Self::page(conn, &f, cursor, limit)?;
            older |= page.older;
            newer |= page.newer;
            searched_to = searched_to.or(page.searched_to);
            searched_up_to = searched_up_to.or(page.searched_up_to);
            pages.extend(page.rows);
        }
        // The newest page has nothing newer, whatever window it was read through.
        newer &= asked != Cursor::Newest;
        pages.sort_by_key(|r| std::cmp::Reverse(r.id));
        match cursor {
            Cursor::After(_) => {
                let extra = pages.len().saturating_sub(limit as usize);
                newer |= extra > 0;
                pages.drain(..extra);
            }
            _ => {
                older |= pages.len() as i64 > limit;
                pages.truncate(limit as usize);
            }
        }
        // Once a page is full, the next one goes on from its last row.
        Ok(LogPage {
            rows: pages,
            older,
            newer,
            searched_to: searched_to.filter(|_| !older),
            searched_up_to: searched_up_to.filter(|_| !newer),
            cursor: asked,
        })
    }

    /// One page, newest first, as the JSON API lists it.
    pub fn list(conn: &mut Read<'_>, filter: &LogFilter, offset: i64, limit: i64) -> QueryResult<(Vec<Self>, bool)> {
        let mut rows: Vec<Self> =
            Self::filtered(filter).order(execution_logs::id.desc()).offset(offset).limit(limit + 1).load(conn.db())?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }

    pub fn find(conn: &mut Read<'_>, id: i64) -> QueryResult<Self> {
        execution_logs::table.find(id).first(conn.db())
    }

    /// Every attempt of one delivery, in order.
    pub fn for_delivery(conn: &mut Read<'_>, delivery_id: i64) -> QueryResult<Vec<Self>> {
        execution_logs::table
            .filter(execution_logs::delivery_id.eq(delivery_id))
            .order((execution_logs::attempt.asc(), execution_logs::id.asc()))
            .load(conn.db())
    }

    /// Every attempt about one object (newest `limit`), oldest first.
    pub fn for_object(conn: &mut Read<'_>, entity: &str, object_id: &str, limit: i64) -> QueryResult<Vec<Self>> {
        let mut rows: Vec<Self> = execution_logs::table
            .filter(execution_logs::object_id.eq(object_id))
            .filter(execution_logs::entity.eq(entity))
            .order(execution_logs::id.desc())
            .limit(limit)
            .load(conn.db())?;
        rows.reverse();
        Ok(rows)
    }

    /// Removes up to `batch` rows older than `before`; returns how many.
    pub fn prune(conn: &mut Write<'_>, before: NaiveDateTime, batch: i64) -> QueryResult<usize> {
        diesel::sql_query(
            "DELETE FROM execution_logs WHERE id IN
               (SELECT id FROM execution_logs WHERE started_at < $1 ORDER BY started_at LIMIT $2)",
        )
        .bind::<Timestamp, _>(before)
        .bind::<BigInt, _>(batch)
        .execute(conn.db())
    }
}

/// The handler list's health figures for one handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlerHealth {
    pub last_outcome: Option<Outcome>,
    pub last_at: Option<NaiveDateTime>,
    pub attempts_24h: i64,
    pub successes_24h: i64,
    /// Attempts per hour, oldest first; the last is the current hour.
    pub per_hour: [i64; 24],
    /// Deliveries failed for good, or retrying after a failed attempt;
    /// more than [`BACKLOG_CAP`] is `BACKLOG_CAP + 1`.
    pub failing: i64,
    /// Deliveries not attempted yet, or in flight; more than [`BACKLOG_CAP`]
    /// is `BACKLOG_CAP + 1`.
    pub pending: i64,
    /// When the unfinished delivery due first fell due (a paused handler's
    /// backlog: how long it has been waiting).
    pub oldest_due: Option<NaiveDateTime>,
}

/// The start of the hour a time falls in.
pub fn hour_of(t: NaiveDateTime) -> NaiveDateTime {
    t.date().and_hms_opt(t.time().hour(), 0, 0).unwrap_or(t)
}

/// Adds attempts to the hourly counts of the handler list's health figures.
pub fn count_attempts(
    conn: &mut Write<'_>,
    handler_id: i64,
    hour: NaiveDateTime,
    attempts: i64,
    successes: i64,
) -> QueryResult<()> {
    cached(
        "INSERT INTO handler_stats (handler_id, hour, attempts, successes) VALUES ($1, $2, $3, $4)
         ON CONFLICT (handler_id, hour) DO UPDATE SET
           attempts = handler_stats.attempts + excluded.attempts,
           successes = handler_stats.successes + excluded.successes",
    )
    .bind::<BigInt, _>(handler_id)
    .bind::<Timestamp, _>(hour)
    .bind::<BigInt, _>(attempts)
    .bind::<BigInt, _>(successes)
    .execute(conn.db())
    .map(drop)
}

/// Removes hourly counts older than two days (the figures show 24 hours).
pub fn prune_stats(conn: &mut Write<'_>) -> QueryResult<usize> {
    diesel::delete(handler_stats::table.filter(handler_stats::hour.lt(now() - TimeDelta::hours(48)))).execute(conn.db())
}

/// The handler list counts a handler's backlog up to this; above, it shows
/// "10,000+" (see [`HandlerHealth::pending`]).
pub const BACKLOG_CAP: i64 = 10_000;
const _: () = assert!(BACKLOG_CAP == 10_000, "the LIMIT 10001 of BACKLOG");

/// The backlog of handler `$1`, each count at most [`BACKLOG_CAP`] + 1.
const BACKLOG: &str = "
    SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE handler_id = $1 AND state IN ('pending', 'in_flight')
                           ORDER BY handler_id, next_attempt_at LIMIT 10001) AS u) AS unfinished,
           (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE handler_id = $1 AND state = 'pending' AND attempts > 0 LIMIT 10001) AS r) AS retrying,
           (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE handler_id = $1 AND state = 'failed' LIMIT 10001) AS f) AS failed,
           (SELECT next_attempt_at FROM deliveries WHERE handler_id = $1 AND state IN ('pending', 'in_flight')
            ORDER BY handler_id, next_attempt_at LIMIT 1) AS oldest_due";

/// A handler's backlog counts, each at most [`BACKLOG_CAP`] + 1.
#[derive(QueryableByName)]
struct BacklogRow {
    #[diesel(sql_type = BigInt)]
    unfinished: i64,
    #[diesel(sql_type = BigInt)]
    retrying: i64,
    #[diesel(sql_type = BigInt)]
    failed: i64,
    #[diesel(sql_type = Nullable<Timestamp>)]
    oldest_due: Option<NaiveDateTime>,
}

impl HandlerHealth {
    /// The figures of the given handlers (those of one page of the list).
    pub fn of(conn: &mut Read<'_>, handler_ids: &[i64]) -> QueryResult<HashMap<i64, HandlerHealth>> {
        let mut health: HashMap<i64, HandlerHealth> =
            handler_ids.iter().map(|id| (*id, HandlerHealth::default())).collect();
        if handler_ids.is_empty() {
            return Ok(health);
        }
        for id in handler_ids {
            let last: Option<(String, NaiveDateTime)> = execution_logs::table
                .filter(execution_logs::handler_id.eq(id))
                .order(execution_logs::id.desc())
                .select((execution_logs::outcome, execution_logs::started_at))
                .first(conn.db())
                .optional()?;
            if let (Some(h), Some((outcome, at))) = (health.get_mut(id), last) {
                h.last_outcome = Some(super::text::parsed(&outcome)?);
                h.last_at = Some(at);
            }
        }
        let current = hour_of(now());
        let since = current - TimeDelta::hours(23);
        let hours: Vec<(i64, NaiveDateTime, i64, i64)> = handler_stats::table
            .filter(handler_stats::handler_id.eq_any(handler_ids))
            .filter(handler_stats::hour.ge(since))
            .select((handler_stats::handler_id, handler_stats::hour, handler_stats::attempts, handler_stats::successes))
            .load(conn.db())?;
        for (handler_id, hour, attempts, successes) in hours {
            let Some(h) = health.get_mut(&handler_id) else { continue };
            let slot = 23 - (current - hour).num_hours();
            if let Some(n) = usize::try_from(slot).ok().and_then(|s| h.per_hour.get_mut(s)) {
                *n += attempts;
            }
            h.attempts_24h += attempts;
            h.successes_24h += successes;
        }
        // Each count reads one partial index, at most BACKLOG_CAP + 1 entries
        // of it: a handler with a backlog of millions costs what one of
        // 10,001 does, and is shown as "10,000+". One prepared statement per
        // handler (planning one for the whole page cost more than running it).
        for id in handler_ids {
            let row: BacklogRow = cached(BACKLOG).bind::<BigInt, _>(*id).get_result(conn.db())?;
            if let Some(h) = health.get_mut(id) {
                h.failing = (row.retrying + row.failed).min(BACKLOG_CAP + 1);
                h.pending = if row.unfinished > BACKLOG_CAP { BACKLOG_CAP + 1 } else { row.unfinished - row.retrying };
                h.oldest_due = row.oldest_due.filter(|due| *due != super::deliveries::PARKED);
            }
        }
        Ok(health)
    }
}

//! The deliveries list (DESIGN §8.5): one row per delivery, with where it
//! stands as an operator means it — pending, waiting on its chain or its
//! object, in flight, retrying at a time, succeeded, failed for good,
//! cancelled — and its last attempt; filtered, newest first, in keyset pages.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{
    Read,
    deliveries::{Delivery, PARKED},
    schema::{deliveries, execution_logs},
};
use crate::domain::DeliveryState;

/// Where a delivery stands, as the list shows and filters it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Due (or due soon) for its first attempt.
    Pending,
    /// Held back: by the handlers before it in its event's chain, or by an
    /// earlier event of its object still unfinished in its ordering group.
    Waiting,
    InFlight,
    /// Failed, with another attempt due at its `next_attempt_at`.
    Retrying,
    Succeeded,
    Failed,
    Cancelled,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Pending => "pending",
            Standing::Waiting => "waiting",
            Standing::InFlight => "in_flight",
            Standing::Retrying => "retrying",
            Standing::Succeeded => "succeeded",
            Standing::Failed => "failed",
            Standing::Cancelled => "cancelled",
        }
    }
}

/// The `state` filter: one standing, or `failing` (failed or retrying).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingFilter {
    Is(Standing),
    Failing,
}

impl std::str::FromStr for StandingFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(StandingFilter::Is(match s.trim() {
            "pending" => Standing::Pending,
            "waiting" => Standing::Waiting,
            "in_flight" => Standing::InFlight,
            "retrying" => Standing::Retrying,
            "succeeded" => Standing::Succeeded,
            "failed" => Standing::Failed,
            "cancelled" => Standing::Cancelled,
            "failing" => return Ok(StandingFilter::Failing),
            _ => {
                return Err(
                    "must be one of pending, waiting, in_flight, retrying, succeeded, failed, cancelled, failing"
                        .into(),
                );
            }
        }))
    }
}

/// The rows of a standing filter, as a condition on `deliveries`: one or two
/// (state, fewest attempts, most attempts) — see [`StandingFilter::bounds`].
macro_rules! standing_rows {
    ($filter:expr) => {{
        let [(s1, lo1, hi1), (s2, lo2, hi2)] = $filter.bounds();
        $crate::db::schema::deliveries::state.eq(s1).and($crate::db::schema::deliveries::attempts.between(lo1, hi1)).or(
            $crate::db::schema::deliveries::state
                .eq(s2)
                .and($crate::db::schema::deliveries::attempts.between(lo2, hi2)),
        )
    }};
}
pub(super) use standing_rows;

impl StandingFilter {
    /// The rows that may stand so, as (state, fewest attempts, most
    /// attempts), either of two: exact for every standing but pending and
    /// waiting, which share their rows (a first attempt not yet made) and
    /// differ by what holds them back ([`StandingFilter::admits`] tells).
    pub(super) fn bounds(self) -> [(&'static str, i32, i32); 2] {
        const NONE: (&str, i32, i32) = ("", 1, 0);
        let any = |state| (state, 0, i32::MAX);
        match self {
            StandingFilter::Failing => [any("failed"), ("pending", 1, i32::MAX)],
            StandingFilter::Is(Standing::Pending | Standing::Waiting) => [("pending", 0, 0), NONE],
            StandingFilter::Is(Standing::Retrying) => [("pending", 1, i32::MAX), NONE],
            StandingFilter::Is(Standing::InFlight) => [any("in_flight"), NONE],
            StandingFilter::Is(Standing::Succeeded) => [any("succeeded"), NONE],
            StandingFilter::Is(Standing::Failed) => [any("failed"), NONE],
            StandingFilter::Is(Standing::Cancelled) => [any("cancelled"), NONE],
        }
    }

    fn admits(self, standing: Standing) -> bool {
        match self {
            StandingFilter::Is(s) => s == standing,
            StandingFilter::Failing => matches!(standing, Standing::Failed | Standing::Retrying),
        }
    }
}

/// The list's filters; all optional.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub handler_id: Option<i64>,
    pub event_id: Option<i64>,
    pub events_id: Option<String>,
    pub state: Option<StandingFilter>,
    pub object_id: Option<String>,
    /// Created at or after.
    pub from: Option<NaiveDateTime>,
    /// Created before.
    pub to: Option<NaiveDateTime>,
}

/// One delivery as listed.
#[derive(Debug, Clone)]
pub struct ListedDelivery {
    pub delivery: Delivery,
    pub handler_name: String,
    pub events_id: String,
    pub standing: Standing,
    /// Its last attempt, if any.
    pub last_attempt: Option<LastAttempt>,
}

/// A delivery's last attempt.
#[derive(Debug, Clone, Queryable)]
pub struct LastAttempt {
    /// Its execution log's id.
    pub log_id: i64,
    pub outcome: String,
    /// The HTTP status or the script's exit code.
    pub status_code: Option<i32>,
    pub started_at: NaiveDateTime,
}

/// One page of the list, and whether older deliveries follow.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub rows: Vec<ListedDelivery>,
    pub more: bool,
}

/// The rows a filter matches, unordered (a macro: the boxed query's type is
/// not worth spelling out). The list pages them newest first; a bulk retry
/// walks them oldest first ([`super::jobs`]).
macro_rules! matching_rows {
    ($filter:expr) => {{
        use $crate::db::schema::{deliveries, events, handlers};
        let filter: &$crate::db::delivery_list::DeliveryFilter = $filter;
        let mut q = deliveries::table
            .inner_join(handlers::table)
            .inner_join(events::table)
            .select((deliveries::all_columns, handlers::name, events::events_id))
            .into_boxed();
        if let Some(h) = filter.handler_id {
            q = q.filter(deliveries::handler_id.eq(h));
        }
        if let Some(e) = filter.event_id {
            q = q.filter(deliveries::event_id.eq(e));
        }
        if let Some(e) = &filter.events_id {
            q = q.filter(events::events_id.eq(e.clone()));
        }
        if let Some(o) = &filter.object_id {
            q = q.filter(deliveries::object_id.eq(o.clone()));
        }
        if let Some(from) = filter.from {
            q = q.filter(deliveries::created_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(deliveries::created_at.lt(to));
        }
        if let Some(state) = filter.state {
            q = q.filter($crate::db::delivery_list::standing_rows!(state));
        }
        q
    }};
}
pub(super) use matching_rows;

/// The filtered rows, newest first, older than `$before`.
macro_rules! filtered_rows {
    ($filter:expr, $before:expr) => {{
        let (filter, before): (&DeliveryFilter, Option<i64>) = ($filter, $before);
        let mut q = matching_rows!(filter);
        if let Some(before) = before {
            q = q.filter(deliveries::id.lt(before));
        }
        q.order(deliveries::id.desc())
    }};
}

/// Rows read per statement when the filter needs a look at each row
/// (pending and waiting differ by what holds them back).
const BATCH: i64 = 200;
/// At most this many rows are looked at for one page; past it the page is
/// shorter and says more follow.
const SCAN_MAX: usize = 5_000;

type Row = (Delivery, String, String);

impl ListedDelivery {
    /// Newest first, older than delivery `before` when given.
    pub fn page(
        conn: &mut Read<'_>,
        filter: &DeliveryFilter,
        before: Option<i64>,
        limit: i64,
    ) -> QueryResult<DeliveryPage> {
        let mut rows = Vec::new();
        let (mut cursor, mut scanned) = (before, 0usize);
        loop {
            let batch: Vec<Row> = filtered_rows!(filter, cursor).limit(BATCH.max(limit + 1)).load(conn.db())?;
            let exhausted = (batch.len() as i64) < BATCH.max(limit + 1);
            for (delivery, handler_name, events_id) in batch {
                scanned += 1;
                cursor = Some(delivery.id);
                let standing = standing(conn, &delivery)?;
                if filter.state.is_some_and(|f| !f.admits(standing)) {
                    continue;
                }
                if rows.len() as i64 == limit {
                    return with_last_attempts(conn, rows, true);
                }
                rows.push(ListedDelivery { delivery, handler_name, events_id, standing, last_attempt: None });
            }
            if exhausted {
                return with_last_attempts(conn, rows, false);
            }
            if scanned >= SCAN_MAX {
                return with_last_attempts(conn, rows, true);
            }
        }
    }
}

/// The page with each row's last attempt, read in one statement.
fn with_last_attempts(conn: &mut Read<'_>, mut rows: Vec<ListedDelivery>, more: bool) -> QueryResult<DeliveryPage> {
    let ids: Vec<i64> = rows.iter().map(|r| r.delivery.id).collect();
    let attempts: Vec<(i64, LastAttempt)> = execution_logs::table
        .filter(execution_logs::delivery_id.eq_any(&ids))
        .order(execution_logs::id.desc())
        .select((
            execution_logs::delivery_id,
            (execution_logs::id, execution_logs::outcome, execution_logs::status_code, execution_logs::started_at),
        ))
        .load(conn.db())?;
    let mut last = std::collections::HashMap::new();
    for (delivery, attempt) in attempts {
        // Newest first: the first of each delivery is its last attempt.
        last.entry(delivery).or_insert(attempt);
    }
    for row in &mut rows {
        row.last_attempt = last.remove(&row.delivery.id);
    }
    Ok(DeliveryPage { rows, more })
}

/// Where `d` stands: its state, and for a pending first attempt whether
/// something holds it back (its chain: parked; its object: an earlier event's
/// delivery unfinished in its ordering group).
fn standing(conn: &mut Read<'_>, d: &Delivery) -> QueryResult<Standing> {
    Ok(match d.state {
        DeliveryState::InFlight => Standing::InFlight,
        DeliveryState::Succeeded => Standing::Succeeded,
        DeliveryState::Failed => Standing::Failed,
        DeliveryState::Cancelled => Standing::Cancelled,
        DeliveryState::Pending if d.attempts > 0 => Standing::Retrying,
        DeliveryState::Pending if d.next_attempt_at == PARKED => Standing::Waiting,
        DeliveryState::Pending => {
            let held: Option<i64> = deliveries::table
                .filter(deliveries::ordering_key.eq(&d.ordering_key))
                .filter(deliveries::entity.eq(&d.entity))
                .filter(deliveries::object_id.eq(&d.object_id))
                .filter(deliveries::event_id.lt(d.event_id))
                .filter(deliveries::state.eq_any(["pending", "in_flight"]))
                .select(deliveries::id)
                .first(conn.db())
                .optional()?;
            if held.is_some() { Standing::Waiting } else { Standing::Pending }
        }
    })
}

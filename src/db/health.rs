//! Each handler's run of failures, kept by the recorder in the transaction of
//! the attempts (DESIGN §8.6): `handler.failing` after so many failed in a
//! row, `handler.recovered` at the success after it, the handler disabled
//! when every attempt has failed for `PROVISIOND_AUTO_DISABLE_AFTER`, and
//! `delivery.exhausted` when a delivery's last attempt fails.

use std::{collections::BTreeMap, time::Duration};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;

use super::{
    Write,
    alerts::{Alert, Raising},
    audit::AuditEntry,
    handlers::Handler,
    logs::NewExecutionLog,
    now,
    schema::handlers,
};
use crate::domain::{HandlerStatus, Outcome, alert::AlertType};

/// What the recorder raises alerts on.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    pub raising: Raising,
    /// `handler.failing` once this many attempts in a row have failed.
    pub failing_after: i32,
    /// Disabled once every attempt has failed for this long; `None`: never.
    pub auto_disable_after: Option<Duration>,
}

/// One handler's attempts in a recorded batch, in the order they ended.
#[derive(Default)]
struct Run {
    succeeded: bool,
    /// Failures after the last success, and when the first of them started.
    failures: i32,
    first_failure: Option<NaiveDateTime>,
}

/// Updates the runs of failures of the handlers of `logs` (attempts just
/// recorded) and raises what they call for; `exhausted`: the handlers of
/// deliveries whose last attempt failed.
pub fn track(conn: &mut Write<'_>, watch: &Watch, logs: &[NewExecutionLog], exhausted: &[i64]) -> QueryResult<()> {
    let mut runs: BTreeMap<i64, Run> = BTreeMap::new();
    for log in logs.iter().filter(|l| !l.test) {
        let run = runs.entry(log.handler_id).or_default();
        if log.outcome == Outcome::Success.as_str() {
            *run = Run { succeeded: true, failures: 0, first_failure: None };
        } else if log.outcome != Outcome::Cancelled.as_str() {
            run.failures += 1;
            run.first_failure.get_or_insert(log.started_at);
        }
    }
    let succeeded: Vec<i64> = runs.iter().filter(|(_, r)| r.succeeded).map(|(id, _)| *id).collect();
    if !succeeded.is_empty() {
        recovered(conn, watch, &succeeded)?;
    }
    for (id, run) in runs.iter().filter(|(_, r)| r.failures > 0) {
        failed(conn, watch, *id, run)?;
    }
    let mut exhausted = exhausted.to_vec();
    exhausted.sort_unstable();
    exhausted.dedup();
    for id in exhausted {
        if let Some(h) = Handler::find_optional(conn, id)? {
            let message = format!("A delivery to {} failed its last attempt; it will not be retried", h.name);
            Alert::raise(conn, watch.raising, AlertType::Exhausted, (h.id, &h.name), &message, serde_json::json!({}))?;
        }
    }
    Ok(())
}

/// Handlers `ids` succeeded: a run of failures ends, with `handler.recovered`
/// where `handler.failing` was raised for it.
fn recovered(conn: &mut Write<'_>, watch: &Watch, ids: &[i64]) -> QueryResult<()> {
    let failing: Vec<(i64, String, bool)> = handlers::table
        .filter(handlers::id.eq_any(ids))
        .filter(handlers::failures_in_a_row.gt(0))
        .select((handlers::id, handlers::name, handlers::failing_alerted))
        .load(conn.db())?;
    if failing.is_empty() {
        return Ok(());
    }
    let ended: Vec<i64> = failing.iter().map(|(id, _, _)| *id).collect();
    diesel::update(handlers::table.filter(handlers::id.eq_any(&ended)))
        .set((
            handlers::failures_in_a_row.eq(0),
            handlers::failing_since.eq(None::<NaiveDateTime>),
            handlers::failing_alerted.eq(false),
        ))
        .execute(conn.db())?;
    for (id, name, _) in failing.into_iter().filter(|(_, _, alerted)| *alerted) {
        let message = format!("{name} succeeded again");
        Alert::raise(conn, watch.raising, AlertType::Recovered, (id, &name), &message, serde_json::json!({}))?;
    }
    Ok(())
}

/// Handler `id` failed `run.failures` times after its last success (or in a
/// run begun before): the run grows, `handler.failing` at its threshold, and
/// the handler is disabled once it has lasted too long.
fn failed(conn: &mut Write<'_>, watch: &Watch, id: i64, run: &Run) -> QueryResult<()> {
    let since = run.first_failure.unwrap_or_else(now);
    // Only an enabled handler's run counts: a paused or disabled one's
    // attempts still under way say nothing of it now.
    let target = handlers::table.find(id).filter(handlers::status.eq(HandlerStatus::Enabled.as_str()));
    let n =
        if run.succeeded {
            diesel::update(target)
                .set((
                    handlers::failures_in_a_row.eq(run.failures),
                    handlers::failing_since.eq(since),
                    handlers::failing_alerted.eq(false),
                ))
                .execute(conn.db())?
        } else {
            diesel::update(target)
                .set((
                    handlers::failures_in_a_row.eq(handlers::failures_in_a_row + run.failures),
                    handlers::failing_since.eq(diesel::dsl::sql::<
                        diesel::sql_types::Nullable<diesel::sql_types::Timestamp>,
                    >("COALESCE(failing_since, ")
                    .bind::<diesel::sql_types::Timestamp, _>(since)
                    .sql(")")),
                ))
                .execute(conn.db())?
        };
    if n == 0 {
        return Ok(()); // deleted or no longer enabled meanwhile
    }
    let h = Handler::find(conn, id)?;
    let failing_since = h.failing_since.unwrap_or(since);
    if h.failures_in_a_row >= watch.failing_after && !h.failing_alerted {
        let message = format!(
            "{} has failed {} attempts in a row, since {} UTC",
            h.name,
            h.failures_in_a_row,
            failing_since.format("%Y-%m-%d %H:%M:%S")
        );
        let extra = serde_json::json!({"failures": h.failures_in_a_row, "since": utc(failing_since)});
        // Within the window of an earlier one it is not raised: tried again
        // at the next failure, so the run is told of once the window ends.
        if Alert::raise(conn, watch.raising, AlertType::Failing, (h.id, &h.name), &message, extra)? {
            diesel::update(target).set(handlers::failing_alerted.eq(true)).execute(conn.db())?;
        }
    }
    let too_long = watch
        .auto_disable_after
        .and_then(|after| TimeDelta::from_std(after).ok())
        .and_then(|after| failing_since.checked_add_signed(after))
        .is_some_and(|deadline| deadline <= now());
    if too_long {
        auto_disable(conn, watch, h, failing_since)?;
    }
    Ok(())
}

/// Disables the handlers whose every attempt has failed for too long, though
/// none has been attempted since (a sweep now and then); how many.
pub fn disable_overdue(conn: &mut Write<'_>, watch: &Watch) -> QueryResult<usize> {
    let Some(cutoff) = watch
        .auto_disable_after
        .and_then(|after| TimeDelta::from_std(after).ok())
        .and_then(|after| now().checked_sub_signed(after))
    else {
        return Ok(0);
    };
    let overdue = |conn: &mut Write<'_>| {
        handlers::table
            .filter(handlers::status.eq(HandlerStatus::Enabled.as_str()))
            .filter(handlers::failing_since.le(cutoff))
            .order(handlers::id)
            .load::<Handler>(conn.db())
    };
    // Locked in id order (as the recorder locks), then read again: a success,
    // an edit or another process's sweep may have come first.
    let ids: Vec<i64> = overdue(conn)?.iter().map(|h| h.id).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    Handler::lock(conn, &ids, super::handlers::RowLock::Change)?;
    let overdue = overdue(conn)?;
    let n = overdue.len();
    for h in overdue {
        let since = h.failing_since.unwrap_or_else(now);
        auto_disable(conn, watch, h, since)?;
    }
    Ok(n)
}

/// Disables `h`, failing since `failing_since`: its pending deliveries are
/// cancelled, the audit log and an alert say why.
fn auto_disable(conn: &mut Write<'_>, watch: &Watch, h: Handler, failing_since: NaiveDateTime) -> QueryResult<()> {
    let (id, old, failures) = (h.id, h.status, h.failures_in_a_row);
    let h = Handler::set_status(conn, id, HandlerStatus::Disabled)?;
    diesel::update(handlers::table.find(id)).set(handlers::auto_disabled_at.eq(now())).execute(conn.db())?;
    let why = format!(
        "every attempt has failed since {} UTC ({failures} in a row)",
        failing_since.format("%Y-%m-%d %H:%M:%S")
    );
    let changes = serde_json::json!({
        "status": {"old": old.as_str(), "new": h.status.as_str()},
        "reason": why,
    });
    AuditEntry::record(conn, "provisiond", "handler.auto_disabled", &format!("handler {} ({})", id, h.name), &changes)?;
    let message = format!("{} was disabled: {why}", h.name);
    let extra = serde_json::json!({"failures": failures, "since": utc(failing_since)});
    Alert::raise(conn, watch.raising, AlertType::Disabled, (h.id, &h.name), &message, extra)?;
    Ok(())
}

/// A time as alerts give it: RFC 3339, UTC, to the microsecond.
pub(super) fn utc(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

//! The recorder's transaction: finished attempts written together — their
//! log rows, the hourly counts, the deliveries' new states — and the next
//! handlers of their events' chains made due.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::QueryResult;

use super::{
    Write,
    alerts::Alert,
    audit::AuditEntry,
    deliveries::{Delivery, Finish},
    handlers::{Handler, RowLock},
    health::{self, Watch},
    logs::{NewExecutionLog, count_attempts, hour_of},
};
use crate::domain::{DeliveryState, HandlerStatus, Outcome, alert::AlertType};

/// One finished attempt, settled: the delivery's new state and the log row.
pub struct Settled {
    pub delivery_id: i64,
    pub handler_id: i64,
    /// Its answer asked to wait (`Retry-After`): the handler is held back until then.
    pub hold_until: Option<NaiveDateTime>,
    pub event_id: i64,
    /// Whether this was the delivery's first attempt to end (it held up the
    /// rest of its event's chain).
    pub first_to_end: bool,
    pub finish: Finish,
    pub log: NewExecutionLog,
}

/// What a finished attempt touches besides its delivery: its handler's row,
/// and whether the row will change (the answer held the handler back, or
/// said it is gone).
pub struct Touches {
    pub delivery_id: i64,
    pub handler_id: i64,
    pub changes_handler: bool,
}

/// Records the attempts `todo` of deliveries leased by `owner` (in one
/// bookkeeping transaction: [`crate::db::Db::bookkeep`]). `settle` decides each one's outcome, told
/// whether its handler is still enabled; a delivery deleted meanwhile (its
/// handler was) is skipped: nothing is left to record it against. Answers
/// whether the worker has new work to look for, at once or later: a retry
/// scheduled, or the next handler of a chain made due.
pub fn record_attempts<T>(
    conn: &mut Write<'_>,
    owner: &str,
    watch: &Watch,
    todo: &[T],
    touches: impl Fn(&T) -> Touches,
    settle: impl Fn(&T, bool) -> Settled,
) -> QueryResult<bool> {
    // The handlers' rows are locked first, in id order, as an edit or a
    // deletion of a handler locks it before its deliveries: the two never
    // wait on each other the other way round (a deletion waiting here for
    // this batch, while this batch waits for the deliveries it deletes).
    // A row this batch changes is locked for that; the others only against
    // their deletion, which other recorders and ingestion do not wait for.
    // Which rows change is judged from the claim (a success changes its
    // handler's row only if it was failing then); a run of failures that
    // began after the claim upgrades the lock later, which can deadlock with
    // another recorder: PostgreSQL then aborts one, and it is tried again
    // (`DbError::is_conflict`), its answers kept.
    let (mut changed, mut kept) = (Vec::new(), Vec::new());
    for t in todo.iter().map(&touches) {
        if t.changes_handler { &mut changed } else { &mut kept }.push(t.handler_id);
    }
    Handler::lock(conn, &changed, RowLock::Change)?;
    kept.retain(|id| !changed.contains(id));
    Handler::lock(conn, &kept, RowLock::KeepKey)?;
    let ids: Vec<i64> = todo.iter().map(|t| touches(t).delivery_id).collect();
    let present: HashMap<i64, bool> = Delivery::still_present(conn, &ids)?.into_iter().collect();
    let settled: Vec<Settled> = todo
        .iter()
        .filter_map(|item| present.get(&touches(item).delivery_id).map(|&enabled| settle(item, enabled)))
        .collect();
    write_settled(conn, owner, watch, settled)
}

fn write_settled(conn: &mut Write<'_>, owner: &str, watch: &Watch, settled: Vec<Settled>) -> QueryResult<bool> {
    let mut ended: HashMap<(DeliveryState, i32), Vec<i64>> = HashMap::new();
    let mut retries = false;
    let mut logs = Vec::with_capacity(settled.len());
    let mut first_attempts = Vec::new();
    let mut holds: HashMap<i64, NaiveDateTime> = HashMap::new();
    // Handlers a delivery of which failed its last attempt.
    let mut exhausted = Vec::new();
    for s in settled {
        if let Some(until) = s.hold_until {
            let hold = holds.entry(s.handler_id).or_insert(until);
            *hold = (*hold).max(until);
        }
        if s.finish.next_attempt_at.is_some() {
            retries = true;
            Delivery::finish(conn, owner, s.delivery_id, &s.finish)?;
        } else {
            if s.finish.state == DeliveryState::Failed {
                exhausted.push(s.handler_id);
            }
            ended.entry((s.finish.state, s.finish.attempts)).or_default().push(s.delivery_id);
        }
        if s.first_to_end {
            first_attempts.push(s.event_id);
        }
        logs.push(s.log);
    }
    NewExecutionLog::insert_all(conn, &logs)?;
    for ((handler_id, hour), (attempts, successes)) in hourly_counts(&logs) {
        count_attempts(conn, handler_id, hour, attempts, successes)?;
    }
    for ((state, attempt), ids) in ended {
        Delivery::end_all(conn, owner, &ids, attempt, state)?;
    }
    // A first attempt ended: the next handler of its event's chain may go.
    let unparked = Delivery::unpark(conn, &first_attempts)?;
    for (handler_id, until) in &holds {
        Handler::hold(conn, *handler_id, *until)?;
    }
    let gone = disable_gone(conn, watch, &logs)?;
    health::track(conn, watch, &logs, &exhausted)?;
    // A hold ends at a time the worker must look again at.
    Ok(retries || unparked > 0 || gone > 0 || !holds.is_empty())
}

/// The status an endpoint answers when it is gone for good (DESIGN §8.2).
pub const GONE: i32 = 410;

/// Disables every still-enabled (or paused) handler one of `logs` got `410
/// Gone` from — its pending deliveries cancelled, as a disable does — with
/// an audit entry by `provisiond`. How many it disabled.
fn disable_gone(conn: &mut Write<'_>, watch: &Watch, logs: &[NewExecutionLog]) -> QueryResult<usize> {
    let mut gone: Vec<i64> = logs
        .iter()
        .filter(|l| l.status_code == Some(GONE) && l.outcome == Outcome::HttpError.as_str() && !l.test)
        .map(|l| l.handler_id)
        .collect();
    gone.sort_unstable();
    gone.dedup();
    let mut disabled = 0;
    for id in gone {
        let Some(old) = Handler::find_optional(conn, id)? else { continue };
        if !old.status.keeps_deliveries() {
            continue;
        }
        let new = Handler::set_status(conn, id, HandlerStatus::Disabled)?;
        let changes = serde_json::json!({
            "status": {"old": old.status.as_str(), "new": new.status.as_str()},
            "reason": "its endpoint answered 410 Gone",
        });
        AuditEntry::record(conn, "provisiond", "handler.gone", &format!("handler {} ({})", id, new.name), &changes)?;
        let message = format!("{} was disabled: its endpoint answered 410 Gone", new.name);
        Alert::raise(conn, watch.raising, AlertType::Disabled, (id, &new.name), &message, serde_json::json!({}))?;
        disabled += 1;
    }
    Ok(disabled)
}

/// Attempts and successes by handler and hour (a cancellation is no attempt).
fn hourly_counts(logs: &[NewExecutionLog]) -> HashMap<(i64, NaiveDateTime), (i64, i64)> {
    let mut hourly: HashMap<(i64, NaiveDateTime), (i64, i64)> = HashMap::new();
    for log in logs.iter().filter(|l| l.outcome != Outcome::Cancelled.as_str()) {
        let counts = hourly.entry((log.handler_id, hour_of(log.started_at))).or_default();
        counts.0 += 1;
        counts.1 += i64::from(log.outcome == Outcome::Success.as_str());
    }
    hourly
}

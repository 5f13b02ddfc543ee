//! The recorder's transaction: finished attempts written together — their
//! log rows, the hourly counts, the deliveries' new states — and the next
//! handlers of their events' chains made due.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::QueryResult;

use super::{
    Write,
    deliveries::{Delivery, Finish},
    logs::{NewExecutionLog, count_attempts, hour_of},
};
use crate::domain::{DeliveryState, Outcome};

/// One finished attempt, settled: the delivery's new state and the log row.
pub struct Settled {
    pub delivery_id: i64,
    pub event_id: i64,
    /// Whether this was the delivery's first attempt to end (it held up the
    /// rest of its event's chain).
    pub first_to_end: bool,
    pub finish: Finish,
    pub log: NewExecutionLog,
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
    todo: &[T],
    delivery_of: impl Fn(&T) -> i64,
    settle: impl Fn(&T, bool) -> Settled,
) -> QueryResult<bool> {
    let ids: Vec<i64> = todo.iter().map(&delivery_of).collect();
    let present: HashMap<i64, bool> = Delivery::still_present(conn, &ids)?.into_iter().collect();
    let settled: Vec<Settled> =
        todo.iter().filter_map(|item| present.get(&delivery_of(item)).map(|&enabled| settle(item, enabled))).collect();
    write_settled(conn, owner, settled)
}

fn write_settled(conn: &mut Write<'_>, owner: &str, settled: Vec<Settled>) -> QueryResult<bool> {
    let mut ended: HashMap<(DeliveryState, i32), Vec<i64>> = HashMap::new();
    let mut retries = false;
    let mut logs = Vec::with_capacity(settled.len());
    let mut first_attempts = Vec::new();
    for s in settled {
        if s.finish.next_attempt_at.is_some() {
            retries = true;
            Delivery::finish(conn, owner, s.delivery_id, &s.finish)?;
        } else {
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
    Ok(retries || unparked > 0)
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

//! Writes finished attempts: the log row and the delivery's new state, many
//! attempts to one transaction (group commit), then wakes the worker.

use std::{
    collections::HashMap,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use chrono::{NaiveDateTime, TimeDelta};
use diesel::prelude::*;
use tokio::sync::mpsc;

use super::{
    Shared,
    outcome::{AttemptResult, Outcome},
    retry::RetrySchedule,
};
use crate::{
    db::{
        DbConnection, DbError,
        deliveries::{Claimed, Delivery, Finish},
        logs::{NewExecutionLog, count_attempts, hour_of},
        now,
    },
    error::cause_chain,
};

/// The most attempts written in one transaction.
const BATCH: usize = 512;

/// How long a busy recorder waits for more attempts to finish.
const LINGER: Duration = Duration::from_micros(500);

/// An attempt that ended, waiting to be written.
pub struct Done {
    pub delivery: Claimed,
    pub attempt: i32,
    pub started_at: NaiveDateTime,
    pub result: AttemptResult,
}

/// Writes until every sender is gone.
pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Under load, give the attempts still running a moment to finish so
        // one commit records more of them; when quiet, record at once.
        let running = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).total;
        if running >= 2 * batch.len() + 8 {
            tokio::task::yield_now().await;
            tokio::time::sleep(LINGER).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(done) => batch.push(done),
                    Err(_) => break,
                }
            }
        }
        let items = std::mem::take(&mut batch);
        let written = items.len();
        for done in &items {
            shared.metrics.count_attempt(done.result.outcome);
        }
        shared.metrics.record_commits.fetch_add(1, Ordering::Relaxed);
        let news = write(&shared, items).await;
        shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).recorded(written);
        // What this freed (room, the next delivery of an object) is due work
        // the worker's last look left behind; the next handler of a chain
        // made due, or a retry scheduled, is new to it. Else nothing is new
        // to the worker: at a low rate, one claim an event instead of two
        // (the second found nothing).
        shared.recorded.fetch_add(1, Ordering::SeqCst);
        if news || shared.behind.load(Ordering::SeqCst) {
            shared.wake.notify_one();
        }
    }
}

/// Writes a batch, retrying while the database is away: the deliveries stay
/// claimed by this process (its leases are renewed) until this succeeds. If
/// the batch fails for a reason of its own rows, each is written alone, so one
/// bad row costs only itself. Whether it made new work for the worker (or may
/// have): see [`write_rows`].
async fn write(shared: &Arc<Shared>, items: Vec<Done>) -> bool {
    let items = Arc::new(items);
    let mut pause = Duration::from_millis(100);
    loop {
        let (owner, schedule, todo) = (shared.owner.clone(), shared.settings.retry_schedule.clone(), items.clone());
        let result = shared
            .db
            .run_write(move |conn| {
                crate::db::bookkeeping_transaction(conn, |conn| write_rows(conn, &owner, &schedule, &todo))
            })
            .await;
        match result {
            Ok(news) => return news,
            Err(DbError::Query(e)) if items.len() > 1 => {
                tracing::warn!(error = %cause_chain(&e), "cannot record a batch of attempts; recording them one by one");
                for one in items.iter() {
                    write_one(shared, one).await;
                }
                return true;
            }
            Err(DbError::Query(e)) => {
                let d = &items[0].delivery;
                tracing::error!(error = %cause_chain(&e), delivery = d.id, "cannot record an attempt; dropped");
                return true;
            }
            Err(e) => {
                tracing::error!(error = %cause_chain(&e), attempts = items.len(), "cannot record attempts; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One attempt in a transaction of its own (after a batch failed).
async fn write_one(shared: &Arc<Shared>, done: &Done) {
    let single = Done {
        delivery: done.delivery.clone(),
        attempt: done.attempt,
        started_at: done.started_at,
        result: done.result.clone(),
    };
    Box::pin(write(shared, vec![single])).await;
}

/// The log rows and new states of a batch. A delivery deleted meanwhile (its
/// handler was deleted) is skipped: nothing is left to record it against.
/// Whether the worker has new work to look for at once or later: a retry
/// scheduled, or the next handler of a chain made due.
fn write_rows(conn: &mut DbConnection, owner: &str, schedule: &RetrySchedule, todo: &[Done]) -> QueryResult<bool> {
    let delivery_ids: Vec<i64> = todo.iter().map(|d| d.delivery.id).collect();
    let present: HashMap<i64, bool> = Delivery::still_present(conn, &delivery_ids)?.into_iter().collect();
    let mut logs = Vec::with_capacity(todo.len());
    let mut ended: HashMap<&'static str, Vec<i64>> = HashMap::new();
    let mut retries = false;
    for done in todo {
        let Some(&handler_enabled) = present.get(&done.delivery.id) else { continue };
        let (finish, log) = settle(done, schedule, handler_enabled);
        logs.push(log);
        if finish.next_attempt_at.is_some() {
            retries = true;
            Delivery::finish(conn, owner, done.delivery.id, &finish)?;
        } else {
            ended.entry(finish.state).or_default().push(done.delivery.id);
        }
    }
    let mut hourly: HashMap<(i64, NaiveDateTime), (i64, i64)> = HashMap::new();
    for log in logs.iter().filter(|l| l.outcome != Outcome::Cancelled.as_str()) {
        let counts = hourly.entry((log.handler_id, hour_of(log.started_at))).or_default();
        counts.0 += 1;
        counts.1 += i64::from(log.outcome == Outcome::Success.as_str());
    }
    NewExecutionLog::insert_all(conn, &logs)?;
    for ((handler_id, hour), (attempts, successes)) in hourly {
        count_attempts(conn, handler_id, hour, attempts, successes)?;
    }
    for (state, ids) in ended {
        Delivery::end_all(conn, owner, &ids, state)?;
    }
    // A first attempt ended: the next handler of its event's chain may go.
    let first_attempts: Vec<i64> =
        todo.iter().filter(|d| d.delivery.attempts == 0).map(|d| d.delivery.event_id).collect();
    let unparked = Delivery::unpark(conn, &first_attempts)?;
    Ok(retries || unparked > 0)
}

/// The delivery's next state and the log row of one attempt.
fn settle(done: &Done, schedule: &RetrySchedule, handler_enabled: bool) -> (Finish, NewExecutionLog) {
    let d = &done.delivery;
    let r = &done.result;
    let (state, next_attempt_at) = match r.outcome {
        Outcome::Success => ("succeeded", None),
        Outcome::Cancelled => ("cancelled", None),
        _ if !handler_enabled => ("cancelled", None),
        _ if done.attempt < d.max_attempts => {
            // The schedule's k-th delay follows the k-th attempt. (A manual
            // retry allows one attempt only, so it never gets here.)
            match schedule.jittered_delay_after(u32::try_from(done.attempt).unwrap_or(u32::MAX)) {
                Some(delay) => ("pending", Some(now() + TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(5)))),
                None => ("failed", None),
            }
        }
        _ => ("failed", None),
    };
    let headers: serde_json::Map<String, serde_json::Value> =
        r.request_headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let log = NewExecutionLog {
        delivery_id: d.id,
        handler_id: d.handler_id,
        event_id: d.event_id,
        events_id: d.events_id.clone(),
        entity: d.entity.clone(),
        object_id: d.object_id.clone(),
        attempt: done.attempt,
        started_at: done.started_at,
        duration_ms: i64::try_from(r.duration.as_millis()).unwrap_or(i64::MAX),
        outcome: r.outcome.as_str().to_owned(),
        status_code: r.status_code,
        request_body: if r.outcome == Outcome::Cancelled { String::new() } else { d.payload.clone() },
        request_headers: serde_json::Value::Object(headers).to_string(),
        response_body: r.response.clone(),
        error: match (&r.error, state) {
            (None, _) => None,
            (Some(e), "cancelled") if r.outcome != Outcome::Cancelled => {
                Some(format!("{e}; not retried: the handler is no longer enabled"))
            }
            (Some(e), _) => Some(e.clone()),
        },
        next_attempt_at,
    };
    (Finish { state, attempts: done.attempt, next_attempt_at }, log)
}

//! Writes finished attempts: the log row and the delivery's new state, many
//! attempts to one transaction (group commit), then wakes the worker.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use chrono::{NaiveDateTime, TimeDelta};
use tokio::sync::mpsc;

use super::{
    Shared,
    outcome::{AttemptResult, Outcome},
};
use crate::{
    db::{
        DbError,
        claims::Claimed,
        deliveries::Finish,
        logs::NewExecutionLog,
        now,
        record::{Settled, Touches, record_attempts},
    },
    diagnostics::cause_chain,
    domain::{RetrySchedule, after_attempt},
};

/// The most attempts written in one transaction.
const BATCH: usize = 512;

/// How long a busy recorder waits for more attempts to finish.
const LINGER: Duration = Duration::from_micros(500);

/// An attempt that ended, waiting to be written.
#[derive(Debug, Clone)]
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
        shared.wakeup.recorded(news);
    }
}

/// Writes a batch; whether it made new work for the worker (or may have):
/// see [`record_attempts`]. Nothing is ever dropped:
/// - while the database is away (restarting, full), the batch is tried again
///   until it answers; the deliveries' leases are not renewed meanwhile (see
///   `InFlight`), so a wait longer than the lease means they are attempted
///   again, never held;
/// - a batch that fails for a reason of its own rows is written one by one,
///   so one bad row costs only itself;
/// - a row the database refuses (what it holds cannot be stored) is written
///   without the handler's answer, with the reason in its error.
async fn write(shared: &Arc<Shared>, items: Vec<Done>) -> bool {
    let items = Arc::new(items);
    let mut pause = Duration::from_millis(100);
    loop {
        let error = match write_batch(shared, items.clone()).await {
            Ok(news) => return news,
            Err(e) => e,
        };
        if !error.is_transient() && items.len() > 1 {
            tracing::warn!(error = %cause_chain(&error), "cannot record a batch of attempts; recording them one by one");
            for one in items.iter() {
                Box::pin(write(shared, vec![one.clone()])).await;
            }
            return true;
        }
        if !error.is_transient() {
            let degraded = Arc::new(vec![items[0].without_answer(&error)]);
            match write_batch(shared, degraded).await {
                Ok(news) => {
                    let d = &items[0].delivery;
                    tracing::error!(error = %cause_chain(&error), delivery = d.id, "cannot record an attempt as it was; recorded without the handler's answer");
                    return news;
                }
                Err(e) => tracing::warn!(error = %cause_chain(&e), "cannot record an attempt even without its answer"),
            }
        }
        tracing::error!(error = %cause_chain(&error), attempts = items.len(), "cannot record attempts; trying again");
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// One transaction of the recorder.
async fn write_batch(shared: &Arc<Shared>, todo: Arc<Vec<Done>>) -> Result<bool, DbError> {
    let (owner, schedule) = (shared.owner.clone(), shared.settings.retry_schedule.clone());
    let (cap, watch) = (shared.settings.retry_after_max, shared.settings.watch);
    shared
        .db
        .bookkeep(move |conn| {
            record_attempts(conn, &owner, &watch, &todo, Done::touches, |d, enabled| settle(d, &schedule, cap, enabled))
        })
        .await
}

impl Done {
    /// What recording it touches: an answer that holds the handler back or
    /// says it is gone changes the handler's row, and so do a failure (its
    /// run of failures grows) and a success that ends a run.
    fn touches(&self) -> Touches {
        let r = &self.result;
        let run_changes = match r.outcome {
            Outcome::Success => self.delivery.handler_failing,
            Outcome::Cancelled => false,
            _ => true,
        };
        Touches {
            delivery_id: self.delivery.id,
            handler_id: self.delivery.handler_id,
            changes_handler: r.retry_after.is_some() || run_changes,
        }
    }

    /// This attempt without what the database refused to store: the
    /// handler's answer is left out, and the error says why.
    fn without_answer(&self, error: &DbError) -> Done {
        let why = format!(
            "the handler's answer could not be recorded ({}); it is left out",
            cause_chain(error).replace('\0', "\u{2400}")
        );
        let error = Some(match &self.result.error {
            Some(e) => format!("{}; {why}", e.replace('\0', "\u{2400}")),
            None => why,
        });
        let result = AttemptResult { response: String::new(), error, ..self.result.clone() };
        Done { result, ..self.clone() }
    }
}

/// The delivery's next state and the log row of one attempt.
/// `cap`: the longest wait an answer's `Retry-After` may impose.
fn settle(done: &Done, schedule: &RetrySchedule, cap: Duration, handler_enabled: bool) -> Settled {
    let d = &done.delivery;
    let r = &done.result;
    // The handler's own schedule, as it is now (a stored one always reads).
    let own = d.retry_schedule.as_deref().map(|s| RetrySchedule::parse(if s == "none" { "" } else { s }));
    let schedule = match &own {
        Some(Ok(own)) => own,
        _ => schedule,
    };
    let after = after_attempt(r.outcome, done.attempt, d.max_attempts, handler_enabled, schedule);
    // "Slow down": the handler is held back until then, and this delivery's
    // retry comes no sooner.
    // Delays come from a schedule or a capped header, but a time past the
    // calendar must never stop the recorder: it is the latest date there is.
    let later = |wait: Duration| {
        TimeDelta::from_std(wait)
            .ok()
            .and_then(|d| now().checked_add_signed(d))
            .unwrap_or(crate::db::deliveries::PARKED)
    };
    let hold_until = r.retry_after.map(|wait| later(wait.min(cap)));
    let next_attempt_at = after
        .retry_in
        .map(later)
        .map(|at| hold_until.map_or(at, |hold| at.max(hold)).min(crate::db::deliveries::PARKED));
    let error = match (&r.error, after.not_retried) {
        (None, _) => None,
        (Some(e), Some(why)) => Some(format!("{e}; {why}")),
        (Some(e), None) => Some(e.clone()),
    };
    let log = NewExecutionLog { next_attempt_at, error, ..log_row(d, done.attempt, done.started_at, r) };
    Settled {
        delivery_id: d.id,
        handler_id: d.handler_id,
        hold_until,
        event_id: d.event_id,
        first_to_end: !d.first_attempt_done,
        finish: Finish { state: after.state, attempts: done.attempt, next_attempt_at },
        log,
    }
}

/// The log row of an attempt of `d` number `attempt` that started at
/// `started_at` and came to `r` (its error as the attempt gave it, no retry).
pub(crate) fn log_row(d: &Claimed, attempt: i32, started_at: NaiveDateTime, r: &AttemptResult) -> NewExecutionLog {
    let headers: serde_json::Map<String, serde_json::Value> =
        r.request_headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    let sent = r.outcome != Outcome::Cancelled;
    NewExecutionLog {
        delivery_id: d.id,
        handler_id: d.handler_id,
        event_id: d.event_id,
        events_id: d.events_id.clone(),
        entity: d.entity.clone(),
        object_id: d.object_id.clone(),
        attempt,
        started_at,
        duration_ms: i64::try_from(r.duration.as_millis()).unwrap_or(i64::MAX),
        outcome: r.outcome.as_str(),
        status_code: r.status_code,
        request_body: if sent { d.payload.clone() } else { String::new() },
        request_headers: serde_json::Value::Object(headers).to_string(),
        response_body: r.response.clone(),
        error: r.error.clone(),
        next_attempt_at: None,
        target: sent.then(|| d.target.clone()),
        test: false,
    }
}

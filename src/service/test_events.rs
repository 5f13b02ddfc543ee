//! Sending a test event to a handler (DESIGN §8.5): the catalogue's sample of
//! its event (or an envelope given instead) as a real, signed attempt, now —
//! whatever the handler's status, so it can be tried before it is enabled —
//! outside ordering and the concurrency limits. It is logged, marked as a
//! test (no delivery, no event: nothing is retried), and audited.

use chrono::{SecondsFormat, Utc};
use serde_json::json;

use super::{
    AppState, Missing, Refusal,
    access::{Action, Actor},
    audit,
};
use crate::{
    catalogue,
    db::{
        claims::Claimed,
        handlers::Handler,
        logs::{ExecutionLog, NewExecutionLog},
        now,
    },
    dispatcher::{outcome::AttemptResult, recorder::log_row},
    domain::{FieldErrors, HandlerStatus, envelope::parse_envelope},
};

/// A test attempt's result, as recorded.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub log: ExecutionLog,
    pub handler: Handler,
}

/// The envelope a test sends by default: the catalogue's sample of `events_id`,
/// dated now.
pub fn sample_envelope(events_id: &str) -> String {
    let sample = catalogue::find(events_id).map_or("{}", |e| e.sample);
    let mut value: serde_json::Value = serde_json::from_str(sample).unwrap_or_default();
    value["event"]["dt"] = json!(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, false));
    serde_json::to_string_pretty(&value).unwrap_or_default()
}

impl AppState {
    /// Sends handler `id` a test event now: `payload` (an envelope), or
    /// when blank the sample of its event. The attempt is recorded as a test.
    pub async fn send_test_event(&self, actor: &Actor, id: i64, payload: &str) -> Result<TestResult, Refusal> {
        actor.must(Action::Retry)?;
        let handler = self
            .db
            .read(move |conn| Handler::find(conn, id))
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        let payload = if payload.trim().is_empty() { sample_envelope(&handler.events_id) } else { payload.to_owned() };
        let event = parse_envelope(payload.as_bytes(), || Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false))
            .map_err(|e| {
                let mut errors = FieldErrors::default();
                errors.add("payload", e.to_string());
                Refusal::Invalid(errors)
            })?;
        let delivery = Claimed {
            id: 0,
            event_id: 0,
            handler_id: handler.id,
            webhook_id: format!("msg_test_{}", uuid::Uuid::new_v4().simple()),
            entity: event.event_type.entity().to_owned(),
            object_id: event.object_id,
            attempts: 1,
            max_attempts: 1,
            first_attempt_done: true,
            events_id: event.event_type.id.to_owned(),
            payload: event.payload,
            handler_type: handler.handler_type,
            target: handler.target.clone(),
            secret: handler.secret.clone(),
            previous_secret: handler.previous_secret.clone(),
            previous_secret_until: handler.previous_secret_until,
            timeout_ms: handler.timeout_ms,
            handler_status: HandlerStatus::Enabled,
            retry_schedule: None,
            // A test goes at once, outside the handler's rate limit.
            rate_limit_milli: None,
            not_before: None,
            handler_failing: false,
        };
        let started_at = now();
        let result: AttemptResult = self.dispatcher.attempt_now(&delivery).await;
        let log = NewExecutionLog { test: true, ..log_row(&delivery, 1, started_at, &result) };
        let (actor, target) = (actor.clone(), audit::handler_target(&handler));
        let changes = json!({"events_id": delivery.events_id, "outcome": result.outcome.as_str(), "status_code": result.status_code});
        let log = self
            .db
            .write(move |conn| {
                let id = log.insert_returning_id(conn)?;
                audit::record(conn, &actor, "handler.test", &target, changes)?;
                ExecutionLog::find(conn, id)
            })
            .await?;
        tracing::info!(handler = handler.id, outcome = log.outcome.as_str(), "test event sent");
        Ok(TestResult { log, handler })
    }
}

//! Every answer of the API as a type: what `openapi.json` documents, and
//! what `tests/it/openapi.rs` holds the answers to. Times are RFC 3339 in UTC
//! (`…Z`); stored text that is JSON is JSON here, not a string inside it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Serialize;

use crate::{
    db::{
        audit::AuditEntry,
        deliveries::Delivery,
        delivery_list::{ListedDelivery, Standing},
        events::Event,
        handlers::Handler,
        logs::ExecutionLog,
        tokens::ApiToken,
    },
    domain::{DeliveryState, HandlerStatus, HandlerType, Outcome, RateLimit},
    service::{Action, Actor},
};

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// A handler (DESIGN §3.2), `secret` included for an actor who may see it.
#[derive(Debug, Serialize)]
pub struct HandlerOut {
    pub id: i64,
    pub name: String,
    pub events_id: String,
    #[serde(rename = "type")]
    pub handler_type: HandlerType,
    pub target: String,
    pub status: HandlerStatus,
    pub priority: i32,
    pub timeout_ms: i32,
    /// Its ordering group (DESIGN §4.4); `null`: its target is.
    pub ordering_group: Option<String>,
    /// Its own retry schedule (DESIGN §8.1), `none` for no retry; `null`: the global one.
    pub retry_schedule: Option<String>,
    /// At most so many attempts a second (DESIGN §8.1); `null`: no limit.
    pub rate_limit: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// After a rotation, until when the previous secret also signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// `v1` (HMAC-SHA256) or `v1a` (ed25519).
    pub signature: &'static str,
    /// A `v1a` handler's `whpk_` public key (public: for every token).
    pub public_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl HandlerOut {
    /// The handler as `actor` may see it: without the secret unless they
    /// may see secrets ([`Action::SeeSecrets`]).
    pub fn new(h: Handler, actor: &Actor) -> Self {
        let (signature, public_key) =
            (crate::domain::signing::Scheme::of(&h.secret).as_str(), crate::domain::signing::public_key(&h.secret));
        let rate_limit = h.rate_limit().map(RateLimit::per_second);
        Self {
            id: h.id,
            name: h.name,
            events_id: h.events_id,
            handler_type: h.handler_type,
            target: h.target,
            status: h.status,
            priority: h.priority,
            timeout_ms: h.timeout_ms,
            ordering_group: h.ordering_group,
            retry_schedule: h.retry_schedule,
            rate_limit,
            secret: actor.may(Action::SeeSecrets).then_some(h.secret),
            previous_secret_until: h.previous_secret_until.filter(|t| *t > crate::db::now()).map(utc),
            signature,
            public_key,
            created_at: utc(h.created_at),
            updated_at: utc(h.updated_at),
        }
    }
}

/// `GET /api/v1/handlers`.
#[derive(Debug, Serialize)]
pub struct HandlerList {
    pub handlers: Vec<HandlerOut>,
    /// How many match the filter, on every page.
    pub total: i64,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize)]
pub struct LogOut {
    pub id: i64,
    pub delivery_id: i64,
    pub handler_id: i64,
    pub event_id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub outcome: Outcome,
    pub status_code: Option<i32>,
    pub request_body: String,
    /// What was sent: the request's headers, or a script's environment.
    pub request_headers: BTreeMap<String, String>,
    pub response_body: String,
    pub error: Option<String>,
    /// When the retry this attempt led to was due; `null` for none.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The URL or script it was sent to (`null`: not sent, or recorded before targets were).
    pub target: Option<String>,
    /// A test event sent by hand: no delivery (`delivery_id` and `event_id` 0).
    pub test: bool,
}

impl From<ExecutionLog> for LogOut {
    fn from(l: ExecutionLog) -> Self {
        // Written by the recorder as a JSON object of strings; a row that is
        // not one (written by hand) shows none rather than failing the list.
        let request_headers = serde_json::from_str(&l.request_headers).unwrap_or_default();
        Self {
            id: l.id,
            delivery_id: l.delivery_id,
            handler_id: l.handler_id,
            event_id: l.event_id,
            events_id: l.events_id,
            entity: l.entity,
            object_id: l.object_id,
            attempt: l.attempt,
            started_at: utc(l.started_at),
            duration_ms: l.duration_ms,
            outcome: l.outcome,
            status_code: l.status_code,
            request_body: l.request_body,
            request_headers,
            response_body: l.response_body,
            error: l.error,
            next_attempt_at: l.next_attempt_at.map(utc),
            target: l.target,
            test: l.test,
        }
    }
}

/// `GET /api/v1/handlers/{id}/logs`: newest first.
#[derive(Debug, Serialize)]
pub struct LogList {
    pub logs: Vec<LogOut>,
    /// Whether older attempts follow (the next `offset`).
    pub more: bool,
}

/// A delivery and where it stands.
#[derive(Debug, Serialize)]
pub struct DeliveryOut {
    pub id: i64,
    pub handler_id: i64,
    pub webhook_id: String,
    pub state: DeliveryState,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `null` when finished, in flight, or waiting for its chain (see `waiting_for`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<&'static str>,
    pub updated_at: DateTime<Utc>,
}

/// Why a pending delivery has no `next_attempt_at` (DESIGN §4.3).
const WAITING_FOR_CHAIN: &str = "the first attempts of the handlers before it in its event's chain";

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        Self {
            next_attempt_at: d.due_at().map(utc),
            waiting_for: d.parked().then_some(WAITING_FOR_CHAIN),
            id: d.id,
            handler_id: d.handler_id,
            webhook_id: d.webhook_id,
            state: d.state,
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            updated_at: utc(d.updated_at),
        }
    }
}

/// `POST /api/v1/events` → 202.
#[derive(Debug, Serialize)]
pub struct IngestedOut {
    pub id: i64,
    /// Deliveries created: one for every handler enabled for the event.
    pub deliveries: i64,
}

/// `GET /api/v1/events/{id}`: the event as stored, with its deliveries.
#[derive(Debug, Serialize)]
pub struct EventOut {
    pub id: i64,
    pub events_id: String,
    /// As posted: a number or a string.
    pub object_id: serde_json::Value,
    pub received_at: DateTime<Utc>,
    /// The envelope handlers receive.
    pub payload: serde_json::Value,
    pub deliveries: Vec<DeliveryOut>,
}

impl EventOut {
    pub fn new(event: Event, deliveries: Vec<Delivery>) -> Self {
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
        Self {
            id: event.id,
            events_id: event.events_id,
            object_id: payload["event"]["object_id"].clone(),
            received_at: utc(event.received_at),
            payload,
            deliveries: deliveries.into_iter().map(DeliveryOut::from).collect(),
        }
    }
}

/// An API token as listed: never the token itself.
#[derive(Debug, Serialize)]
pub struct TokenOut {
    pub id: i64,
    pub name: String,
    pub scope: String,
    /// The token's first characters, to tell tokens apart.
    pub prefix: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenOut {
    fn from(t: ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            scope: t.scope,
            prefix: t.prefix,
            created_by: t.created_by,
            created_at: utc(t.created_at),
            last_used_at: t.last_used_at.map(utc),
            revoked_at: t.revoked_at.map(utc),
        }
    }
}

/// `GET /api/v1/tokens`.
#[derive(Debug, Serialize)]
pub struct TokenList {
    pub tokens: Vec<TokenOut>,
}

/// `POST /api/v1/tokens` → 201: the token, shown this once.
#[derive(Debug, Serialize)]
pub struct TokenCreated {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub token: String,
}

/// One audit log entry.
#[derive(Debug, Serialize)]
pub struct AuditOut {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// Field → `{"old", "new"}`, secrets redacted.
    pub changes: serde_json::Value,
}

impl From<AuditEntry> for AuditOut {
    fn from(e: AuditEntry) -> Self {
        let changes = serde_json::from_str(&e.changes).unwrap_or(serde_json::Value::String(e.changes));
        Self { id: e.id, at: utc(e.at), actor: e.actor, action: e.action, target: e.target, changes }
    }
}

/// `GET /api/v1/audit`: newest first.
#[derive(Debug, Serialize)]
pub struct AuditList {
    pub entries: Vec<AuditOut>,
    /// Whether older entries follow (pass the last `id` as `before`).
    pub more: bool,
}

/// One delivery of `GET /api/v1/deliveries`.
#[derive(Debug, Serialize)]
pub struct ListedDeliveryOut {
    pub id: i64,
    pub handler_id: i64,
    pub handler_name: String,
    pub event_id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    /// pending, waiting, in_flight, retrying, succeeded, failed or cancelled.
    pub state: &'static str,
    pub attempts: i32,
    pub max_attempts: i32,
    /// When a retrying or pending delivery is due; `null` otherwise.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_outcome: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<ListedDelivery> for ListedDeliveryOut {
    fn from(l: ListedDelivery) -> Self {
        let d = l.delivery;
        let due = d.due_at().filter(|_| matches!(l.standing, Standing::Retrying | Standing::Pending));
        Self {
            id: d.id,
            handler_id: d.handler_id,
            handler_name: l.handler_name,
            event_id: d.event_id,
            events_id: l.events_id,
            entity: d.entity,
            object_id: d.object_id,
            state: l.standing.as_str(),
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            next_attempt_at: due.map(utc),
            last_outcome: l.last_attempt.as_ref().map(|a| a.outcome.clone()),
            last_status_code: l.last_attempt.as_ref().and_then(|a| a.status_code),
            last_attempt_at: l.last_attempt.as_ref().map(|a| utc(a.started_at)),
            created_at: utc(d.created_at),
        }
    }
}

/// `GET /api/v1/deliveries`: newest first.
#[derive(Debug, Serialize)]
pub struct DeliveryListOut {
    pub deliveries: Vec<ListedDeliveryOut>,
    /// Whether older deliveries follow (pass the last `id` as `before`).
    pub more: bool,
}

/// A bulk retry or replay (DESIGN §8.5) and how far it has come.
#[derive(Debug, Serialize)]
pub struct JobOut {
    pub id: i64,
    /// `retry` or `replay`.
    pub kind: &'static str,
    /// `running`, `done` or `cancelled`.
    pub state: &'static str,
    /// A replay's handler.
    pub handler_id: Option<i64>,
    /// The filter it was started with, as given.
    pub filter: serde_json::Value,
    /// Deliveries (retry) or events (replay) matched when it started.
    pub matched: i64,
    /// Those retried or replayed so far.
    pub done: i64,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<crate::db::jobs::BulkJob> for JobOut {
    fn from(j: crate::db::jobs::BulkJob) -> Self {
        Self {
            id: j.id,
            kind: j.kind.as_str(),
            state: j.state.as_str(),
            handler_id: j.handler_id,
            filter: serde_json::from_str(&j.filter).unwrap_or_default(),
            matched: j.matched,
            done: j.done,
            created_by: j.created_by,
            created_at: utc(j.created_at),
            updated_at: utc(j.updated_at),
            finished_at: j.finished_at.map(utc),
        }
    }
}

/// A bulk retry's or replay's answer: its count, and the job when it started.
#[derive(Debug, Serialize)]
pub struct BulkOut {
    pub dry_run: bool,
    pub matched: i64,
    /// Of a retry's, those that succeeded already (sent again).
    pub succeeded: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobOut>,
}

impl From<crate::service::BulkStart> for BulkOut {
    fn from(b: crate::service::BulkStart) -> Self {
        Self { dry_run: b.job.is_none(), matched: b.matched, succeeded: b.succeeded, job: b.job.map(JobOut::from) }
    }
}

/// The newest jobs.
#[derive(Debug, Serialize)]
pub struct JobList {
    pub jobs: Vec<JobOut>,
}

/// A test event's attempt (DESIGN §8.5), as logged.
#[derive(Debug, Serialize)]
pub struct TestOut {
    /// Its execution log.
    pub log_id: i64,
    pub outcome: Outcome,
    /// The HTTP status or the script's exit code.
    pub status_code: Option<i32>,
    pub duration_ms: i64,
    /// The response body or the script's output (first 64 KiB).
    pub response: String,
    pub error: Option<String>,
    /// Where it was sent.
    pub target: Option<String>,
    /// The envelope sent.
    pub payload: serde_json::Value,
}

impl From<ExecutionLog> for TestOut {
    fn from(l: ExecutionLog) -> Self {
        Self {
            log_id: l.id,
            outcome: l.outcome,
            status_code: l.status_code,
            duration_ms: l.duration_ms,
            response: l.response_body,
            error: l.error,
            target: l.target,
            payload: serde_json::from_str(&l.request_body).unwrap_or(serde_json::Value::String(l.request_body)),
        }
    }
}

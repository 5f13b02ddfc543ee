//! `/api/v1/events`: ingestion (DESIGN §3.3, §4.2) and an event's deliveries.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{NaiveDateTime, SecondsFormat};
use serde::Serialize;
use serde_json::json;

use super::{auth::ApiClient, parse_id, read_body};
use crate::{
    db::{
        deliveries::Delivery,
        events::{Event, Ingested},
    },
    domain::DeliveryState,
    error::{ApiError, ApiResult},
    service::{AppState, IngestRequest},
};

const IDEMPOTENCY_KEY_MAX: usize = 255;

/// `POST /api/v1/events` → 202 `{"id", "deliveries"}`, once the event and a
/// delivery for every handler enabled for it are committed.
pub async fn ingest_event(
    _: ApiClient,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let idempotency_key = idempotency_key(&req)?;
    let body = read_body(payload, state.settings.max_body_bytes).await?;
    let Ingested { id, deliveries, .. } = state.ingest(IngestRequest { body: &body, idempotency_key }).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/events/{id}")))
        .json(json!({ "id": id, "deliveries": deliveries })))
}

fn idempotency_key(req: &HttpRequest) -> ApiResult<Option<String>> {
    let Some(value) = req.headers().get("idempotency-key") else { return Ok(None) };
    let key = value.to_str().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ApiError::Unprocessable {
            message: format!("the Idempotency-Key header must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"),
            errors: None,
        });
    }
    Ok(Some(key.to_owned()))
}

#[derive(Serialize)]
struct DeliveryOut {
    id: i64,
    handler_id: i64,
    webhook_id: String,
    state: DeliveryState,
    attempts: i32,
    max_attempts: i32,
    /// `null` when finished, in flight, or waiting for its chain (see `waiting_for`).
    next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<&'static str>,
    updated_at: String,
}

/// Why a pending delivery has no `next_attempt_at` (DESIGN §4.3).
const WAITING_FOR_CHAIN: &str = "the first attempts of the handlers before it in its event's chain";

fn rfc3339(t: NaiveDateTime) -> String {
    t.and_utc().to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        Self {
            next_attempt_at: d.due_at().map(rfc3339),
            waiting_for: d.parked().then_some(WAITING_FOR_CHAIN),
            id: d.id,
            handler_id: d.handler_id,
            webhook_id: d.webhook_id,
            state: d.state,
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            updated_at: rfc3339(d.updated_at),
        }
    }
}

/// A delivery as the API shows it.
pub fn delivery_json(d: Delivery) -> serde_json::Value {
    json!(DeliveryOut::from(d))
}

/// `GET /api/v1/events/{id}`: the event as stored, with its deliveries and their states.
pub async fn get_event(_: ApiClient, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let (event, deliveries) = state
        .db
        .run(move |conn| Ok((Event::find(conn, id)?, Delivery::for_event(conn, id)?)))
        .await
        .map_err(|e| if e.is_not_found() { ApiError::NotFound(format!("no event {id}")) } else { e.into() })?;
    let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
    let deliveries: Vec<DeliveryOut> = deliveries.into_iter().map(DeliveryOut::from).collect();
    Ok(HttpResponse::Ok().json(json!({
        "id": event.id,
        "events_id": event.events_id,
        "object_id": payload["event"]["object_id"],
        "received_at": rfc3339(event.received_at),
        "payload": payload,
        "deliveries": deliveries,
    })))
}

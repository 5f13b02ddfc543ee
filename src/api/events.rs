//! `/api/v1/events`: ingestion (DESIGN §3.3, §4.2) and an event's deliveries.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{
    auth::ApiClient,
    parse_id, read_body,
    shapes::{EventOut, IngestedOut},
};
use crate::{
    db::{
        deliveries::Delivery,
        events::{Event, Ingested},
    },
    error::{ApiError, ApiResult},
    service::{AppState, IngestRequest},
};

const IDEMPOTENCY_KEY_MAX: usize = 255;

/// `POST /api/v1/events` → 202 `{"id", "deliveries"}`, once the event and a
/// delivery for every handler enabled for it are committed.
pub async fn ingest_event(
    client: ApiClient,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    let idempotency_key = idempotency_key(&req)?;
    let body = read_body(payload, state.settings.max_body_bytes).await?;
    let Ingested { id, deliveries, .. } =
        state.ingest(&client.actor, IngestRequest { body: &body, idempotency_key }).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/events/{id}")))
        .json(IngestedOut { id, deliveries }))
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

/// `GET /api/v1/events/{id}`: the event as stored, with its deliveries and their states.
pub async fn get_event(_: ApiClient, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let (event, deliveries) = state
        .db
        .read(move |conn| Ok((Event::find(conn, id)?, Delivery::for_event(conn, id)?)))
        .await
        .map_err(|e| if e.is_not_found() { ApiError::NotFound(format!("no event {id}")) } else { e.into() })?;
    Ok(HttpResponse::Ok().json(EventOut::new(event, deliveries)))
}

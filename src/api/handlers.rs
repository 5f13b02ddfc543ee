//! `/api/v1/handlers`: the same rules as the form, answered in JSON.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    auth::ApiClient,
    parse_id, read_json_object,
    shapes::{HandlerList, HandlerOut, LogList, LogOut},
};
use crate::{
    db::{
        handlers::{Handler, HandlerFilter},
        logs::{ExecutionLog, LogFilter},
    },
    domain::{FieldErrors, HandlerForm, HandlerStatus, HandlerType},
    error::{ApiError, ApiResult},
    service::{AppState, Missing, Refusal},
};

/// Fields the API reads; the others of a handler's JSON are read-only and ignored.
const WRITABLE: &[&str] = &[
    "name",
    "events_id",
    "type",
    "target",
    "status",
    "priority",
    "timeout_ms",
    "ordering_group",
    "signature",
    "retry_schedule",
    "rate_limit",
];
const READ_ONLY: &[&str] = &["id", "secret", "public_key", "previous_secret_until", "created_at", "updated_at"];

/// Lays the JSON fields over a form: strings and numbers are read as the form
/// would read them; anything else is an error on that field.
fn merge_json(mut form: HandlerForm, body: Map<String, Value>) -> Result<HandlerForm, FieldErrors> {
    let mut errors = FieldErrors::default();
    for (key, value) in body {
        if READ_ONLY.contains(&key.as_str()) {
            continue;
        }
        if !WRITABLE.contains(&key.as_str()) {
            errors.add(&key, format!("unknown field; the fields are {}", WRITABLE.join(", ")));
            continue;
        }
        let Some(text) = super::form_text(value) else {
            errors.add(&key, "must be a string or a number");
            continue;
        };
        let slot = match key.as_str() {
            "name" => &mut form.name,
            "events_id" => &mut form.events_id,
            "type" => &mut form.handler_type,
            "target" => &mut form.target,
            "status" => &mut form.status,
            "priority" => &mut form.priority,
            "ordering_group" => &mut form.ordering_group,
            "retry_schedule" => &mut form.retry_schedule,
            "rate_limit" => &mut form.rate_limit,
            "signature" => &mut form.signature,
            _ => &mut form.timeout_ms,
        };
        *slot = text;
    }
    if errors.is_empty() { Ok(form) } else { Err(errors) }
}

fn invalid(errors: FieldErrors) -> ApiError {
    Refusal::Invalid(errors).into()
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    event: Option<String>,
    #[serde(rename = "type")]
    handler_type: Option<String>,
    status: Option<String>,
    /// Text the name or the target contains.
    q: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/handlers`: filtered like the Advanced Search; sorted by priority then id.
pub async fn list_handlers(
    client: ApiClient,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let mut errors = FieldErrors::default();
    let events_id = q.event.filter(|e| !e.is_empty());
    if events_id.as_deref().is_some_and(|e| crate::catalogue::find(e).is_none()) {
        errors.add("event", "not an event of the catalogue");
    }
    let handler_type = q
        .handler_type
        .filter(|t| !t.is_empty())
        .and_then(|t| t.parse::<HandlerType>().map_err(|_| errors.add("type", "must be http or script")).ok());
    let status = q.status.filter(|s| !s.is_empty()).and_then(|s| {
        s.parse::<HandlerStatus>()
            .map_err(|_| errors.add("status", "must be enabled, paused, disabled or archived"))
            .ok()
    });
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        errors.add("limit", "must be from 1 to 10000");
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        errors.add("offset", "must not be negative");
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable { message: "invalid query parameters".into(), errors: Some(errors) });
    }
    let text = q.q.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    let filter = HandlerFilter { events_id, handler_type, status, text, sort: Default::default() };
    let (rows, total) = state.db.read(move |conn| Handler::list(conn, &filter, offset, limit)).await?;
    Ok(HttpResponse::Ok()
        .json(HandlerList { handlers: rows.into_iter().map(|h| HandlerOut::new(h, &client.actor)).collect(), total }))
}

/// `POST /api/v1/handlers` → 201 with the handler.
pub async fn create_handler(
    client: ApiClient,
    state: web::Data<AppState>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let body = read_json_object(body, state.settings.max_body_bytes).await?;
    let form = merge_json(HandlerForm::default(), body).map_err(invalid)?;
    let handler = state.create_handler(&client.actor, &form).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/handlers/{}", handler.id)))
        .json(HandlerOut::new(handler, &client.actor)))
}

pub async fn get_handler(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let handler = state.db.read(move |conn| Handler::find(conn, id)).await.map_err(not_found(id))?;
    Ok(HttpResponse::Ok().json(HandlerOut::new(handler, &client.actor)))
}

/// `PATCH /api/v1/handlers/{id}`: the fields given replace the stored ones; the
/// result must pass every rule.
pub async fn update_handler(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let body = read_json_object(body, state.settings.max_body_bytes).await?;
    let handler = state.db.read(move |conn| Handler::find(conn, id)).await.map_err(not_found(id))?;
    let form = merge_json(handler.to_form(), body).map_err(invalid)?;
    let handler = state.update_handler(&client.actor, id, &form).await?;
    Ok(HttpResponse::Ok().json(HandlerOut::new(handler, &client.actor)))
}

pub async fn delete_handler(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    state.delete_handler(&client.actor, id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/handlers/{id}/secret`: a new signing secret, returned with the handler.
pub async fn rotate_secret(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let handler = state.rotate_handler_secret(&client.actor, id).await?;
    Ok(HttpResponse::Ok().json(HandlerOut::new(handler, &client.actor)))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct LogsQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/v1/handlers/{id}/logs`: the handler's attempts, newest first.
pub async fn list_handler_logs(
    _: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
    query: web::Query<LogsQuery>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let offset = query.offset.unwrap_or(0).max(0);
    let (logs, more) = state
        .db
        .read(move |conn| {
            Handler::find(conn, id)?;
            ExecutionLog::list(conn, &LogFilter { handler_id: Some(id), ..LogFilter::default() }, offset, limit)
        })
        .await
        .map_err(not_found(id))?;
    Ok(HttpResponse::Ok().json(LogList { logs: logs.into_iter().map(LogOut::from).collect(), more }))
}

fn not_found(id: i64) -> impl Fn(crate::db::DbError) -> ApiError {
    move |e| {
        if e.is_not_found() { Refusal::NotFound(Missing::Handler(id)).into() } else { ApiError::from(e) }
    }
}

/// `POST /api/v1/handlers/{id}/test`: sends the handler a test event now —
/// `{"payload": <envelope>}` (an object, or its JSON text), else the sample of
/// its event — and answers the attempt's outcome (200), logged as a test.
pub async fn send_test_event(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let body = super::read_body(body, state.settings.max_body_bytes).await?;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
        match value.get("payload") {
            None | Some(Value::Null) if value.as_object().is_some_and(|o| o.keys().all(|k| k == "payload")) => {
                String::new()
            }
            Some(Value::String(text)) => text.clone(),
            Some(envelope @ Value::Object(_)) => envelope.to_string(),
            _ => {
                let mut errors = FieldErrors::default();
                errors.add("payload", "must be the envelope to send (an object), or absent for the event's sample");
                return Err(Refusal::Invalid(errors).into());
            }
        }
    };
    let sent = state.send_test_event(&client.actor, id, &payload).await?;
    Ok(HttpResponse::Ok().json(super::shapes::TestOut::from(sent.log)))
}

//! The JSON API under `/api/v1` (DESIGN §6), behind a bearer token.

pub mod audit;
pub mod auth;
pub mod deliveries;
pub mod events;
pub mod handlers;
pub mod jobs;
pub mod shapes;
pub mod tokens;

use actix_web::{HttpResponse, web};
use futures_util::StreamExt;

use crate::error::{ApiError, ApiResult};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/openapi.json", web::get().to(openapi))
            .route("/events", web::post().to(events::ingest_event))
            .route("/events/{id}", web::get().to(events::get_event))
            .route("/deliveries", web::get().to(deliveries::list_deliveries))
            .route("/deliveries/retry", web::post().to(jobs::bulk_retry))
            .route("/deliveries/{id}/retry", web::post().to(deliveries::retry_delivery))
            .route("/jobs", web::get().to(jobs::list_jobs))
            .route("/jobs/{id}", web::get().to(jobs::get_job))
            .route("/jobs/{id}/cancel", web::post().to(jobs::cancel_job))
            .route("/handlers", web::get().to(handlers::list_handlers))
            .route("/handlers", web::post().to(handlers::create_handler))
            .route("/handlers/{id}", web::get().to(handlers::get_handler))
            .route("/handlers/{id}", web::patch().to(handlers::update_handler))
            .route("/handlers/{id}", web::delete().to(handlers::delete_handler))
            .route("/handlers/{id}/secret", web::post().to(handlers::rotate_secret))
            .route("/handlers/{id}/logs", web::get().to(handlers::list_handler_logs))
            .route("/handlers/{id}/replay", web::post().to(jobs::replay))
            .route("/handlers/{id}/test", web::post().to(handlers::send_test_event))
            .route("/tokens", web::get().to(tokens::list_tokens))
            .route("/tokens", web::post().to(tokens::create_token))
            .route("/tokens/{id}", web::delete().to(tokens::revoke_token))
            .route("/audit", web::get().to(audit::list_audit))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::NotFound("no such API route".into()))
            })),
    );
}

/// The OpenAPI description of this API.
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(include_str!("openapi.json"))
}

/// How long a request body may take to arrive (a slow sender is answered 408).
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads a request body of at most `limit` bytes (413 above it), within
/// [`BODY_READ_TIMEOUT`] (408 past it).
pub async fn read_body(payload: web::Payload, limit: usize) -> ApiResult<web::Bytes> {
    tokio::time::timeout(BODY_READ_TIMEOUT, read_body_untimed(payload, limit)).await.map_err(|_| ApiError::TooSlow)?
}

async fn read_body_untimed(mut payload: web::Payload, limit: usize) -> ApiResult<web::Bytes> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Reads a JSON object body of at most `limit` bytes, with errors a client can act on.
pub async fn read_json_object(
    payload: web::Payload,
    limit: usize,
) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    let body = read_body(payload, limit).await?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(ApiError::Unprocessable { message: "the body must be a JSON object".into(), errors: None }),
    }
}

/// A JSON value read as a form field reads its text: a string as it is, a
/// number's digits, `null` as blank; `None` for anything else (an object, a
/// list, a boolean), which the caller names as its field's error.
pub fn form_text(value: serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Parses an id from the path; a non-number is a 404 like any unknown id.
pub fn parse_id(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| ApiError::NotFound(format!("no such id `{text}`")))
}

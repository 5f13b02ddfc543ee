//! `/api/v1/deliveries`: re-running a finished delivery by hand.

use actix_web::{HttpResponse, web};

use super::{auth::ApiClient, events::delivery_json, parse_id};
use crate::{
    app::AppState,
    db::deliveries::Delivery,
    error::{ApiError, ApiResult},
};

/// `POST /api/v1/deliveries/{id}/retry`: a succeeded, failed or cancelled
/// delivery gets one more attempt, at once → 202 with the delivery.
/// One still pending or in flight → 409.
pub async fn retry_delivery(
    _: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let retried = state
        .db
        .run(move |conn| Delivery::retry(conn, id))
        .await
        .map_err(|e| if e.is_not_found() { ApiError::NotFound(format!("no delivery {id}")) } else { e.into() })?;
    match retried {
        Some(delivery) => {
            state.dispatcher.wake();
            tracing::info!(delivery = id, "delivery queued again by hand");
            Ok(HttpResponse::Accepted().json(delivery_json(delivery)))
        }
        None => Err(ApiError::Conflict(format!(
            "delivery {id} is not finished: only a succeeded, failed or cancelled delivery can be retried"
        ))),
    }
}

//! `/api/v1/deliveries`: re-running a finished delivery by hand.

use actix_web::{HttpResponse, web};

use super::{auth::ApiClient, parse_id, shapes::DeliveryOut};
use crate::{error::ApiResult, service::AppState};

/// `POST /api/v1/deliveries/{id}/retry`: a succeeded, failed or cancelled
/// delivery gets one more attempt, at once → 202 with the delivery.
/// One still pending or in flight → 409.
pub async fn retry_delivery(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let delivery = state.retry_delivery(&client.actor, parse_id(&id)?).await?;
    Ok(HttpResponse::Accepted().json(DeliveryOut::from(delivery)))
}

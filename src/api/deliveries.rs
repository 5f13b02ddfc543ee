//! `/api/v1/deliveries`: the deliveries list (DESIGN §8.5) and re-running a
//! finished delivery by hand.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{
    auth::ApiClient,
    parse_id,
    shapes::{DeliveryListOut, DeliveryOut, ListedDeliveryOut},
};
use crate::{
    db::delivery_list::ListedDelivery,
    error::{ApiError, ApiResult},
    service::{AppState, filters::DeliveryQuery},
};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    #[serde(flatten)]
    filters: DeliveryQuery,
    /// Text: a flattened query reads every value as text.
    limit: String,
}

/// `GET /api/v1/deliveries`: one row per delivery, newest first; filters
/// `handler_id`, `event`, `state`, `object_id`, `from`, `to`; `before` pages back.
pub async fn list_deliveries(
    _: ApiClient,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> ApiResult<HttpResponse> {
    let query = query.into_inner();
    let invalid = |errors| ApiError::Unprocessable { message: "invalid query parameters".into(), errors: Some(errors) };
    let (filter, before) = query.filters.parse().map_err(invalid)?;
    let limit = match query.limit.trim() {
        "" => 100,
        n => n.parse::<i64>().unwrap_or(0),
    };
    if !(1..=1000).contains(&limit) {
        let mut errors = crate::domain::FieldErrors::default();
        errors.add("limit", "must be from 1 to 1000");
        return Err(invalid(errors));
    }
    let page = state.db.read(move |conn| ListedDelivery::page(conn, &filter, before, limit)).await?;
    Ok(HttpResponse::Ok().json(DeliveryListOut {
        deliveries: page.rows.into_iter().map(ListedDeliveryOut::from).collect(),
        more: page.more,
    }))
}

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

//! The deliveries page (DESIGN §8.5): one row per delivery — where it
//! stands, its attempts and its last outcome — with filters and keyset pages.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;

use super::{
    render,
    session::CurrentAdmin,
    views::utc,
    views::{EventGroup, Layout, event_groups, event_label, link_with, query_string},
};
use crate::{
    db::delivery_list::{ListedDelivery, Standing},
    error::{AppError, AppResult},
    service::{
        AppState,
        filters::{DeliveryQuery, in_one_line},
    },
};

const PER_PAGE: i64 = 50;

/// The states a filter offers (the deliveries list, the Execution Logs).
pub const STATES: &[(&str, &str)] = &[
    ("failing", "Failing (failed or retrying)"),
    ("pending", "Pending"),
    ("waiting", "Waiting on its chain or object"),
    ("in_flight", "In flight"),
    ("retrying", "Retrying"),
    ("succeeded", "Succeeded"),
    ("failed", "Failed for good"),
    ("cancelled", "Cancelled"),
];

/// One row as the page shows it.
pub struct DeliveryRow {
    pub id: i64,
    pub handler_id: i64,
    pub handler_name: String,
    pub event_label: String,
    pub object: String,
    pub state: &'static str,
    /// The state in words: "retrying at 2026-12-04 10:00:05 UTC".
    pub state_text: String,
    pub attempts: String,
    pub last_outcome: String,
    pub last_code: String,
    pub last_at: String,
    pub last_log: Option<i64>,
}

impl From<ListedDelivery> for DeliveryRow {
    fn from(l: ListedDelivery) -> Self {
        let d = &l.delivery;
        let state_text = match l.standing {
            Standing::Pending => "pending".to_owned(),
            Standing::Waiting => "waiting on its chain or its object".to_owned(),
            Standing::InFlight => "in flight".to_owned(),
            Standing::Retrying => d.due_at().map_or("retrying".to_owned(), |t| format!("retrying at {}", utc(t))),
            Standing::Succeeded => "succeeded".to_owned(),
            Standing::Failed => "failed for good".to_owned(),
            Standing::Cancelled => "cancelled".to_owned(),
        };
        Self {
            id: d.id,
            handler_id: d.handler_id,
            event_label: event_label(&l.events_id),
            object: format!("{} {}", d.entity, d.object_id),
            state: l.standing.as_str(),
            state_text,
            attempts: format!("{} of {}", d.attempts, d.max_attempts),
            last_outcome: l.last_attempt.as_ref().map(|a| a.outcome.clone()).unwrap_or_default(),
            last_code: l.last_attempt.as_ref().and_then(|a| a.status_code).map(|c| c.to_string()).unwrap_or_default(),
            last_at: l.last_attempt.as_ref().map(|a| utc(a.started_at)).unwrap_or_default(),
            last_log: l.last_attempt.as_ref().map(|a| a.log_id),
            handler_name: l.handler_name,
        }
    }
}

#[derive(Template)]
#[template(path = "deliveries/list.html")]
pub struct DeliveriesPage {
    pub layout: Layout,
    pub rows: Vec<DeliveryRow>,
    pub query: DeliveryQuery,
    pub groups: Vec<EventGroup>,
    pub states: &'static [(&'static str, &'static str)],
    pub older_url: Option<String>,
    pub filtered: bool,
    /// The filters, for "Retry these…".
    pub filter_fields: Vec<(&'static str, String)>,
}

#[get("/provisioning/deliveries")]
pub async fn list_deliveries(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<DeliveryQuery>,
) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let (filter, before) = query.parse().map_err(|e| AppError::BadRequest(in_one_line(&e)))?;
    let page = state.db.read(move |conn| ListedDelivery::page(conn, &filter, before, PER_PAGE)).await?;
    let filter_fields: Vec<(&'static str, String)> = [
        ("handler_id", &query.handler_id),
        ("event_id", &query.event_id),
        ("event", &query.event),
        ("state", &query.state),
        ("object_id", &query.object_id),
        ("from", &query.from),
        ("to", &query.to),
    ]
    .into_iter()
    .filter(|(_, v)| !v.trim().is_empty())
    .map(|(k, v)| (k, v.trim().to_owned()))
    .collect();
    let pairs: Vec<(&str, &str)> = filter_fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let filters = query_string(&pairs);
    let older_url = page
        .more
        .then(|| page.rows.last().map(|r| r.delivery.id))
        .flatten()
        .map(|id| link_with("/provisioning/deliveries", &filters, "before", id));
    let page = DeliveriesPage {
        layout: Layout::new(&admin, "Deliveries", "deliveries"),
        rows: page.rows.into_iter().map(DeliveryRow::from).collect(),
        filtered: !filters.is_empty(),
        query,
        groups: event_groups(),
        states: STATES,
        older_url,
        filter_fields,
    };
    render(StatusCode::OK, &page)
}

//! The events page (DESIGN §8.5): every event received, those no handler
//! matched included, newest first, each linking to its deliveries.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;

use super::{
    render,
    session::CurrentAdmin,
    views::{EventGroup, Layout, event_groups, event_label, link_with, query_string},
};
use crate::{
    db::{event_list::EventPage, handlers::Handler},
    error::{AppError, AppResult},
    service::{
        AppState,
        filters::{EventQuery, in_one_line},
    },
};

const PER_PAGE: i64 = 50;

/// The filters' query string, for the page links.
fn filters_query(q: &EventQuery) -> String {
    query_string(&[("event", &q.event), ("object_id", &q.object_id), ("from", &q.from), ("to", &q.to)])
}
/// One event as listed.
pub struct EventRow {
    pub id: i64,
    pub received_at: String,
    pub event_label: String,
    pub entity: String,
    pub object_id: String,
    pub deliveries: i64,
}

#[derive(Template)]
#[template(path = "events/list.html")]
pub struct EventsPage {
    pub layout: Layout,
    pub rows: Vec<EventRow>,
    pub query: EventQuery,
    pub groups: Vec<EventGroup>,
    pub older_url: Option<String>,
    pub filtered: bool,
    /// The enabled handlers a replay may go to (of the filter's event, when set).
    pub replay_handlers: Vec<(i64, String)>,
}

#[get("/provisioning/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<EventQuery>,
) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let (filter, before) = query.parse().map_err(|e| AppError::BadRequest(in_one_line(&e)))?;
    let event = filter.events_id.clone();
    let (page, replay_handlers) = state
        .db
        .read(move |conn| {
            let handlers = Handler::enabled(conn, event.as_deref())?;
            Ok((EventPage::load(conn, &filter, before, PER_PAGE)?, handlers))
        })
        .await?;
    let replay_handlers = replay_handlers
        .into_iter()
        .map(|h| (h.id, format!("#{} {} ({})", h.id, h.name, event_label(&h.events_id))))
        .collect();
    let filters = filters_query(&query);
    let older_url = page
        .more
        .then(|| page.rows.last().map(|(e, _)| e.id))
        .flatten()
        .map(|id| link_with("/provisioning/events", &filters, "before", id));
    let rows = page
        .rows
        .into_iter()
        .map(|(e, deliveries)| EventRow {
            id: e.id,
            received_at: e.received_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            event_label: event_label(&e.events_id),
            entity: e.entity,
            object_id: e.object_id,
            deliveries,
        })
        .collect();
    let page = EventsPage {
        layout: Layout::new(&admin, "Events", "events"),
        rows,
        filtered: !filters.is_empty(),
        query,
        groups: event_groups(),
        older_url,
        replay_handlers,
    };
    render(StatusCode::OK, &page)
}

//! The events page (DESIGN §8.5): every event received, those no handler
//! matched included, newest first, each linking to its deliveries.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render,
    session::CurrentAdmin,
    views::{EventGroup, Layout, event_groups, event_label, link_with, query_string},
};
use crate::{
    db::event_list::{EventFilter, EventPage},
    domain::duration::parse_instant,
    error::{AppError, AppResult},
    service::AppState,
};

const PER_PAGE: i64 = 50;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EventQuery {
    pub event: String,
    pub object_id: String,
    pub from: String,
    pub to: String,
    pub before: String,
}

impl EventQuery {
    fn filter(&self) -> Result<(EventFilter, Option<i64>), String> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let events_id = text(&self.event);
        if let Some(e) = events_id.as_deref().filter(|e| crate::catalogue::find(e).is_none()) {
            return Err(format!("There is no event `{e}` in the catalogue."));
        }
        let before = match self.before.trim() {
            "" => None,
            b => Some(b.parse::<i64>().map_err(|_| format!("`{b}` is not an event id."))?),
        };
        let filter = EventFilter {
            events_id,
            object_id: text(&self.object_id),
            from: parse_instant(&self.from, false)?,
            to: parse_instant(&self.to, true)?,
        };
        Ok((filter, before))
    }

    fn filters_query(&self) -> String {
        query_string(&[("event", &self.event), ("object_id", &self.object_id), ("from", &self.from), ("to", &self.to)])
    }
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
}

#[get("/provisioning/events")]
pub async fn list_events(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<EventQuery>,
) -> AppResult<HttpResponse> {
    let query = query.into_inner();
    let (filter, before) = query.filter().map_err(AppError::BadRequest)?;
    let page = state.db.read(move |conn| EventPage::load(conn, &filter, before, PER_PAGE)).await?;
    let filters = query.filters_query();
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
    };
    render(StatusCode::OK, &page)
}

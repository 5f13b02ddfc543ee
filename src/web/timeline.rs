//! One object's timeline: every event about it and every attempt to deliver
//! it, across all handlers, in time order.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;
use chrono::NaiveDateTime;
use serde::Deserialize;

use super::{
    logs::handler_names,
    render,
    session::CurrentAdmin,
    views::{Layout, event_label},
};
use crate::{
    catalogue,
    db::{events::Event, logs::ExecutionLog},
    error::{AppError, AppResult},
    service::AppState,
};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct TimelineQuery {
    entity: String,
    object_id: String,
}

/// One line of an object's history: an event received, or an attempt.
pub struct TimelineEntry {
    pub at: NaiveDateTime,
    pub when: String,
    pub event_id: i64,
    pub event_label: String,
    /// For an attempt: its log row.
    pub log_id: Option<i64>,
    pub handler_name: String,
    pub attempt: i32,
    pub outcome: String,
    pub success: bool,
    pub code: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "logs/timeline.html")]
pub struct TimelinePage {
    pub layout: Layout,
    pub entities: Vec<&'static str>,
    pub entity: String,
    pub object_id: String,
    pub entries: Vec<TimelineEntry>,
    pub searched: bool,
}

const TIMELINE_LIMIT: i64 = 1000;

#[get("/provisioning/timeline")]
pub async fn show_timeline(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<TimelineQuery>,
) -> AppResult<HttpResponse> {
    let entities = catalogue::entities();
    let entity = query.entity.trim().to_owned();
    let object_id = query.object_id.trim().to_owned();
    let searched = !object_id.is_empty();
    if !entity.is_empty() && !entities.contains(&entity.as_str()) {
        return Err(AppError::BadRequest(format!("Unknown entity `{entity}`: use one of {}.", entities.join(", "))));
    }
    if searched && entity.is_empty() {
        return Err(AppError::BadRequest("Choose what kind of object the id is (the entity).".into()));
    }
    let mut entries = Vec::new();
    if searched {
        let (e, o) = (entity.clone(), object_id.clone());
        let (events, logs, names) = state
            .db
            .read(move |conn| {
                let events = Event::for_object(conn, &e, &o, TIMELINE_LIMIT)?;
                let logs = ExecutionLog::for_object(conn, &e, &o, TIMELINE_LIMIT)?;
                let names = handler_names(conn, logs.iter().map(|l| l.handler_id))?;
                Ok((events, logs, names))
            })
            .await?;
        for ev in events {
            entries.push(TimelineEntry {
                at: ev.received_at,
                when: ev.received_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                event_id: ev.id,
                event_label: event_label(&ev.events_id),
                log_id: None,
                handler_name: String::new(),
                attempt: 0,
                outcome: "received".into(),
                success: true,
                code: String::new(),
                detail: String::new(),
            });
        }
        for l in logs {
            entries.push(TimelineEntry {
                at: l.started_at,
                when: l.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                event_id: l.event_id,
                event_label: event_label(&l.events_id),
                log_id: Some(l.id),
                handler_name: names.get(&l.handler_id).cloned().unwrap_or_else(|| format!("#{}", l.handler_id)),
                attempt: l.attempt,
                success: l.outcome == crate::domain::Outcome::Success,
                code: l.status_code.map(|c| c.to_string()).unwrap_or_default(),
                detail: l.error.clone().unwrap_or_default().chars().take(120).collect(),
                outcome: l.outcome.label().to_owned(),
            });
        }
        entries.sort_by_key(|e| (e.at, e.log_id.is_some(), e.log_id));
    }
    let title = if searched { format!("Timeline of {entity} {object_id}") } else { "Object timeline".to_owned() };
    render(
        StatusCode::OK,
        &TimelinePage {
            layout: Layout::new(&admin, title, "timeline"),
            entities,
            entity,
            object_id,
            entries,
            searched,
        },
    )
}

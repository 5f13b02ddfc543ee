//! The Execution Logs tab: every attempt, newest first, per handler or for all.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render,
    session::CurrentAdmin,
    views::{EventGroup, Layout, Pager, event_groups, event_label, parse_page},
};
use crate::{
    app::AppState,
    db::{
        handlers::Handler,
        logs::{ExecutionLog, LogFilter},
    },
    error::{AppError, AppResult},
};

const OUTCOMES: &[&str] = &["success", "http_error", "timeout", "connection_error", "script_error", "cancelled"];

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct LogQuery {
    event: String,
    outcome: String,
    page: String,
}

/// One row of the log table.
pub struct LogRow {
    pub id: i64,
    pub success: bool,
    pub started_at: String,
    pub event_label: String,
    pub handler_id: i64,
    pub object_id: String,
    pub response_preview: String,
    pub duration_ms: i64,
    pub attempt: i32,
    pub code: String,
    pub outcome: String,
}

impl From<ExecutionLog> for LogRow {
    fn from(l: ExecutionLog) -> Self {
        let preview: String = l.error.as_deref().unwrap_or(&l.response_body).chars().take(80).collect();
        Self {
            id: l.id,
            success: l.outcome == "success",
            started_at: l.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            event_label: event_label(&l.events_id),
            handler_id: l.handler_id,
            object_id: l.object_id,
            response_preview: preview,
            duration_ms: l.duration_ms,
            attempt: l.attempt,
            code: l.status_code.map(|c| c.to_string()).unwrap_or_default(),
            outcome: l.outcome,
        }
    }
}

#[derive(Template)]
#[template(path = "logs/list.html")]
pub struct LogListPage {
    pub layout: Layout,
    pub heading: String,
    pub path: String,
    pub rows: Vec<LogRow>,
    pub event: String,
    pub outcome: String,
    pub outcomes: &'static [&'static str],
    pub groups: Vec<EventGroup>,
    pub pager: Pager,
}

async fn show_logs(
    state: &AppState,
    admin: &CurrentAdmin,
    query: &LogQuery,
    handler: Option<Handler>,
) -> AppResult<HttpResponse> {
    let events_id = match query.event.trim() {
        "" => None,
        e if crate::catalogue::find(e).is_some() => Some(e.to_owned()),
        e => {
            return Err(AppError::BadRequest(format!("There is no event `{e}` in the catalogue.")));
        }
    };
    let outcome = match query.outcome.trim() {
        "" => None,
        o if OUTCOMES.contains(&o) => Some(o.to_owned()),
        o => {
            return Err(AppError::BadRequest(format!("Unknown outcome `{o}`: use one of {}.", OUTCOMES.join(", "))));
        }
    };
    let page = parse_page(&query.page).map_err(AppError::BadRequest)?;
    let filter = LogFilter { handler_id: handler.as_ref().map(|h| h.id), events_id, outcome, delivery_id: None };
    let (rows, more) =
        state.db.run(move |conn| ExecutionLog::list(conn, &filter, Pager::offset(page), Pager::PER_PAGE)).await?;
    let (heading, path) = match &handler {
        Some(h) => (format!("Execution Logs — {} (#{})", h.name, h.id), format!("/provisioning/{}/logs", h.id)),
        None => ("Execution Logs — all handlers".to_owned(), "/provisioning/logs".to_owned()),
    };
    let pairs: Vec<(&str, &str)> = [("event", query.event.trim()), ("outcome", query.outcome.trim())]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    let filters = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let pager = Pager::new(&path, &filters, page, None, rows.len(), more);
    render(
        StatusCode::OK,
        &LogListPage {
            layout: Layout::new(admin, heading.clone(), "logs"),
            heading,
            path,
            rows: rows.into_iter().map(LogRow::from).collect(),
            event: query.event.trim().to_owned(),
            outcome: query.outcome.trim().to_owned(),
            outcomes: OUTCOMES,
            groups: event_groups(),
            pager,
        },
    )
}

#[get("/provisioning/logs")]
pub async fn list_all_logs(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<LogQuery>,
) -> AppResult<HttpResponse> {
    show_logs(&state, &admin, &query, None).await
}

#[get("/provisioning/{id:\\d+}/logs")]
pub async fn list_handler_logs(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    id: web::Path<i64>,
    query: web::Query<LogQuery>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let handler = state.db.run(move |conn| Handler::find(conn, id)).await?;
    show_logs(&state, &admin, &query, Some(handler)).await
}

//! The audit log page (DESIGN §8.3): who changed what, newest first, with filters.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render,
    session::CurrentAdmin,
    views::{Layout, link_with, query_string},
};
use crate::{
    db::audit::{AuditEntry, AuditFilter},
    domain::duration::parse_instant,
    error::{AppError, AppResult},
    service::{Action, AppState},
};

const PER_PAGE: i64 = 100;

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    pub actor: String,
    pub action: String,
    pub target: String,
    pub from: String,
    pub to: String,
    pub before: String,
}

impl AuditQuery {
    /// The filter, or a message saying which value is wrong.
    pub fn filter(&self) -> Result<(AuditFilter, Option<i64>), String> {
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let before = match self.before.trim() {
            "" => None,
            b => Some(b.parse::<i64>().map_err(|_| format!("`{b}` is not an entry number."))?),
        };
        let filter = AuditFilter {
            actor: text(&self.actor),
            action: text(&self.action),
            target: text(&self.target),
            from: parse_instant(&self.from, false)?,
            to: parse_instant(&self.to, true)?,
        };
        Ok((filter, before))
    }

    fn filters_query(&self) -> String {
        query_string(&[
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("from", &self.from),
            ("to", &self.to),
        ])
    }
}

/// One entry as the page shows it.
pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// `field: old → new`, one per change.
    pub changes: Vec<String>,
}

impl From<AuditEntry> for AuditRow {
    fn from(e: AuditEntry) -> Self {
        let shown = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => "—".into(),
            other => other.to_string(),
        };
        let changes = match serde_json::from_str::<serde_json::Value>(&e.changes) {
            Ok(serde_json::Value::Object(map)) => map
                .iter()
                .map(|(field, change)| match (change.get("old"), change.get("new")) {
                    (Some(old), Some(new)) => format!("{field}: {} → {}", shown(old), shown(new)),
                    _ => format!("{field}: {}", shown(change)),
                })
                .collect(),
            _ => vec![e.changes.clone()],
        };
        Self {
            at: e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: e.actor,
            action: e.action,
            target: e.target,
            changes,
        }
    }
}

#[derive(Template)]
#[template(path = "settings/audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub rows: Vec<AuditRow>,
    pub query: AuditQuery,
    pub older_url: Option<String>,
}

#[get("/settings/audit")]
pub async fn show_audit(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<AuditQuery>,
) -> AppResult<HttpResponse> {
    admin.actor.must(Action::Read)?;
    let query = query.into_inner();
    let (filter, before) = query.filter().map_err(AppError::BadRequest)?;
    let (entries, more) = state.db.read(move |conn| AuditEntry::page(conn, &filter, before, PER_PAGE)).await?;
    let filters = query.filters_query();
    let older_url = more
        .then(|| entries.last().map(|e| e.id))
        .flatten()
        .map(|id| link_with("/settings/audit", &filters, "before", id));
    let page = AuditPage {
        layout: Layout::new(&admin, "Audit log", "audit"),
        rows: entries.into_iter().map(AuditRow::from).collect(),
        query,
        older_url,
    };
    render(StatusCode::OK, &page)
}

//! `GET /api/v1/audit`: the audit log (DESIGN §8.3), newest first.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{
    auth::ApiClient,
    shapes::{AuditList, AuditOut},
};
use crate::{
    db::audit::{AuditEntry, AuditFilter},
    domain::{FieldErrors, duration::parse_instant},
    error::{ApiError, ApiResult},
    service::AppState,
};

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    target: Option<String>,
    from: Option<String>,
    to: Option<String>,
    before: Option<i64>,
    limit: Option<i64>,
}

/// Filters `actor`, `action` (exact, or a prefix ending in `.`), `target`
/// (contains), `from`, `to`; `before` (an entry id) pages back.
pub async fn list_audit(
    _: ApiClient,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> ApiResult<HttpResponse> {
    let q = query.into_inner();
    let mut errors = FieldErrors::default();
    let text = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
    let mut instant = |field: &str, v: &Option<String>, end: bool| {
        parse_instant(v.as_deref().unwrap_or(""), end).map_err(|e| errors.add(field, e)).ok().flatten()
    };
    let (from, to) = (instant("from", &q.from, false), instant("to", &q.to, true));
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        errors.add("limit", "must be from 1 to 1000");
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable { message: "invalid query parameters".into(), errors: Some(errors) });
    }
    let filter = AuditFilter { actor: text(q.actor), action: text(q.action), target: text(q.target), from, to };
    let before = q.before;
    let (entries, more) = state.db.read(move |conn| AuditEntry::page(conn, &filter, before, limit)).await?;
    Ok(HttpResponse::Ok().json(AuditList { entries: entries.into_iter().map(AuditOut::from).collect(), more }))
}

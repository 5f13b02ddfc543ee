//! The Execution Logs tab (per handler and for all), an attempt's details
//! with Retry, and one object's timeline.

use std::collections::HashMap;

use actix_web::{HttpResponse, get, http::StatusCode, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render, see_other,
    session::{CsrfForm, CurrentAdmin, safe_local},
    views::{ConfirmPage, EventGroup, Layout, event_groups, event_label, link_with, query_string},
};
use crate::{
    catalogue,
    db::{
        QueryResult, Read,
        deliveries::Delivery,
        handlers::Handler,
        logs::{Cursor, ExecutionLog, LogFilter},
    },
    domain::{DeliveryState, Outcome},
    error::{AppError, AppResult},
    service::{AppState, Refusal},
};

const PER_PAGE: i64 = 50;
/// The status filter's value for every failed attempt (any outcome but success and cancelled).
const FAILURES: &str = "fail";

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct LogQuery {
    event: String,
    outcome: String,
    q: String,
    object_id: String,
    from: String,
    to: String,
    before: String,
    after: String,
    /// Where the attempt's delivery stands now (the deliveries list's states).
    delivery: String,
}

impl LogQuery {
    fn filter(&self, handler_id: Option<i64>) -> Result<LogFilter, String> {
        let events_id = match self.event.trim() {
            "" => None,
            e if catalogue::find(e).is_some() => Some(e.to_owned()),
            e => return Err(format!("There is no event `{e}` in the catalogue.")),
        };
        let outcome = match self.outcome.trim() {
            "" | FAILURES => None,
            o => Some(
                o.parse::<Outcome>()
                    .map_err(|_| format!("Unknown status `{o}`: use success, fail or one of the outcomes."))?,
            ),
        };
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        Ok(LogFilter {
            handler_id,
            events_id,
            outcome,
            q: text(&self.q),
            object_id: text(&self.object_id),
            from: crate::domain::duration::parse_instant(&self.from, false)?,
            to: crate::domain::duration::parse_instant(&self.to, true)?,
            delivery_id: None,
            delivery_state: match self.delivery.trim() {
                "" => None,
                d => Some(d.parse().map_err(|e| format!("Unknown delivery state `{d}`: it {e}."))?),
            },
        })
    }

    fn cursor(&self) -> Result<Cursor, String> {
        let id = |s: &str| s.trim().parse::<i64>().map_err(|_| format!("`{s}` is not a log id"));
        match (self.before.trim(), self.after.trim()) {
            ("", "") => Ok(Cursor::Newest),
            (b, "") => Ok(Cursor::Before(id(b)?)),
            ("", a) => Ok(Cursor::After(id(a)?)),
            _ => Err("Use either `before` or `after`, not both.".into()),
        }
    }

    /// The filters as a query string (no cursor).
    fn filters_query(&self) -> String {
        query_string(&[
            ("event", &self.event),
            ("outcome", &self.outcome),
            ("q", &self.q),
            ("object_id", &self.object_id),
            ("from", &self.from),
            ("to", &self.to),
            ("delivery", &self.delivery),
        ])
    }
}

/// One row of the log table.
pub struct LogRow {
    pub id: i64,
    pub success: bool,
    pub outcome: String,
    pub started_at: String,
    pub event_label: String,
    pub handler_id: i64,
    pub handler_name: String,
    pub entity: String,
    pub object_id: String,
    pub preview: String,
    pub duration_ms: i64,
    pub attempt: i32,
    pub code: String,
    /// A failed attempt whose delivery has succeeded since (a retry did).
    pub later_succeeded: bool,
}

impl LogRow {
    /// `later`: the current states of the failed attempts' deliveries.
    fn new(l: ExecutionLog, names: &HashMap<i64, String>, later: &HashMap<i64, crate::domain::DeliveryState>) -> Self {
        // The response if there was one, else what went wrong (a timeout, a refused connection).
        let source = if l.response_body.is_empty() { l.error.as_deref().unwrap_or_default() } else { &l.response_body };
        let preview: String = source.chars().filter(|c| !c.is_control()).take(80).collect();
        Self {
            id: l.id,
            success: l.outcome == Outcome::Success,
            started_at: l.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            event_label: event_label(&l.events_id),
            handler_id: l.handler_id,
            handler_name: names.get(&l.handler_id).cloned().unwrap_or_else(|| format!("#{}", l.handler_id)),
            entity: l.entity,
            object_id: l.object_id,
            preview,
            duration_ms: l.duration_ms,
            attempt: l.attempt,
            code: l.status_code.map(|c| c.to_string()).unwrap_or_default(),
            later_succeeded: l.outcome != Outcome::Success
                && later.get(&l.delivery_id) == Some(&crate::domain::DeliveryState::Succeeded),
            outcome: l.outcome.label().to_owned(),
        }
    }
}

pub(super) fn handler_names(conn: &mut Read<'_>, ids: impl Iterator<Item = i64>) -> QueryResult<HashMap<i64, String>> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    Handler::names(conn, &ids)
}

#[derive(Template)]
#[template(path = "logs/list.html")]
pub struct LogListPage {
    pub layout: Layout,
    pub heading: String,
    pub path: String,
    pub rows: Vec<LogRow>,
    pub query: LogQuery,
    pub filtered: bool,
    pub outcomes: Vec<&'static str>,
    pub groups: Vec<EventGroup>,
    pub newer_url: Option<String>,
    pub older_url: Option<String>,
    pub handler: Option<Handler>,
    /// The delivery states the filter offers.
    pub delivery_states: &'static [(&'static str, &'static str)],
    /// A text search stopped at this attempt before filling the page.
    pub searched_to: Option<i64>,
    /// How many attempts a page of a text search looks at, as text.
    pub window: String,
}

async fn show_logs(
    state: &AppState,
    admin: &CurrentAdmin,
    query: LogQuery,
    handler: Option<Handler>,
) -> AppResult<HttpResponse> {
    let filter = query.filter(handler.as_ref().map(|h| h.id)).map_err(AppError::BadRequest)?;
    let cursor = query.cursor().map_err(AppError::BadRequest)?;
    let only_failures = query.outcome.trim() == FAILURES;
    let (page, names, delivery_states) = state
        .db
        .read(move |conn| {
            let page = if only_failures {
                ExecutionLog::page_failures(conn, &filter, cursor, PER_PAGE)?
            } else {
                ExecutionLog::page(conn, &filter, cursor, PER_PAGE)?
            };
            let names = handler_names(conn, page.rows.iter().map(|r| r.handler_id))?;
            let failed: Vec<i64> =
                page.rows.iter().filter(|r| r.outcome != Outcome::Success).map(|r| r.delivery_id).collect();
            let states = crate::db::deliveries::Delivery::states_of(conn, &failed)?;
            Ok((page, names, states))
        })
        .await?;
    let (heading, path) = match &handler {
        Some(h) => (format!("Execution Logs — {}", h.name), format!("/provisioning/{}/logs", h.id)),
        None => ("Execution Logs".to_owned(), "/provisioning/logs".to_owned()),
    };
    let filters = query.filters_query();
    let link = |key: &str, id: i64| link_with(&path, &filters, key, id);
    // The links go on from the page's ends; a text search's page that its
    // window ended goes on from the window's end (it may have no rows at all).
    let newer_url = match (page.searched_up_to, page.rows.first(), page.cursor) {
        (Some(top), _, _) => Some(link("after", top)),
        (None, Some(first), _) if page.newer => Some(link("after", first.id)),
        (None, None, Cursor::Before(before)) => Some(link("after", before.saturating_sub(1))),
        _ => None,
    };
    let older_url = match (page.searched_to, page.rows.last(), page.cursor) {
        (Some(bottom), _, _) => Some(link("before", bottom)),
        (None, Some(last), _) if page.older => Some(link("before", last.id)),
        (None, None, Cursor::After(after)) => Some(link("before", after.saturating_add(1))),
        _ => None,
    };
    let mut outcomes = vec![Outcome::Success.as_str(), FAILURES];
    outcomes.extend(Outcome::ALL.iter().filter(|o| **o != Outcome::Success).map(|o| o.as_str()));
    render(
        StatusCode::OK,
        &LogListPage {
            layout: Layout::new(admin, heading.clone(), "logs"),
            heading,
            path,
            rows: page.rows.into_iter().map(|l| LogRow::new(l, &names, &delivery_states)).collect(),
            filtered: !filters.is_empty(),
            query,
            outcomes,
            groups: event_groups(),
            newer_url,
            older_url,
            handler,
            delivery_states: super::deliveries::STATES,
            searched_to: page.searched_to,
            window: super::views::grouped(crate::db::logs::SEARCH_WINDOW),
        },
    )
}

#[get("/provisioning/logs")]
pub async fn list_all_logs(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<LogQuery>,
) -> AppResult<HttpResponse> {
    show_logs(&state, &admin, query.into_inner(), None).await
}

#[get("/provisioning/{id:\\d+}/logs")]
pub async fn list_handler_logs(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    id: web::Path<i64>,
    query: web::Query<LogQuery>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
    show_logs(&state, &admin, query.into_inner(), Some(handler)).await
}

/// The state of a delivery as an administrator reads it.
pub fn describe_state(d: &Delivery) -> String {
    match d.state {
        DeliveryState::Pending if d.attempts == 0 => "pending: waiting for its turn".to_owned(),
        DeliveryState::Pending => format!("retrying at {} UTC", d.next_attempt_at.format("%Y-%m-%d %H:%M:%S")),
        DeliveryState::InFlight => "in flight: being attempted now".to_owned(),
        DeliveryState::Failed if d.attempts == 1 => "failed after 1 attempt".to_owned(),
        DeliveryState::Failed => format!("failed after {} attempts", d.attempts),
        DeliveryState::Succeeded | DeliveryState::Cancelled => d.state.as_str().to_owned(),
    }
}

/// One attempt of the delivery, for the list on the details page.
pub struct AttemptRow {
    pub id: i64,
    pub attempt: i32,
    pub started_at: String,
    pub outcome: String,
    pub success: bool,
    pub code: String,
    pub duration_ms: i64,
    pub current: bool,
}

impl AttemptRow {
    /// Attempt `o` of a delivery, the one the page is about being `current`.
    fn new(o: &ExecutionLog, current: i64) -> Self {
        Self {
            id: o.id,
            attempt: o.attempt,
            started_at: o.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            outcome: o.outcome.label().to_owned(),
            success: o.outcome == Outcome::Success,
            code: o.status_code.map(|c| c.to_string()).unwrap_or_default(),
            duration_ms: o.duration_ms,
            current: o.id == current,
        }
    }
}

#[derive(Template)]
#[template(path = "logs/detail.html")]
pub struct LogDetailPage {
    pub layout: Layout,
    pub log: ExecutionLog,
    pub success: bool,
    pub handler_name: String,
    pub event_label: String,
    pub payload: String,
    pub headers: Vec<(String, String)>,
    pub delivery: Option<Delivery>,
    pub delivery_state: String,
    pub finished: bool,
    pub attempts: Vec<AttemptRow>,
    pub started_at: String,
    pub next_attempt_at: Option<String>,
    /// The handler's target now, when it differs from where this attempt went.
    pub target_now: Option<String>,
    /// Where the delivery stands now, when a later attempt changed it: the
    /// page says it first ("now succeeded, by attempt 3").
    pub now_headline: Option<String>,
    /// Asked before retrying a delivery that succeeded (it sends the event again).
    pub resend_question: Option<String>,
}

/// What an attempt's page shows: the attempt, its delivery and that
/// delivery's every attempt (a test attempt: no delivery, itself alone), and
/// its handler now with its name (a deleted one's as it was).
struct Details {
    log: ExecutionLog,
    delivery: Option<Delivery>,
    others: Vec<ExecutionLog>,
    handler: Option<Handler>,
    name: Option<String>,
}

fn load_details(conn: &mut Read<'_>, log_id: i64) -> QueryResult<Details> {
    let log = ExecutionLog::find(conn, log_id)?;
    let (delivery, others) = if log.test {
        (None, vec![log.clone()])
    } else {
        (Delivery::find_optional(conn, log.delivery_id)?, ExecutionLog::for_delivery(conn, log.delivery_id)?)
    };
    let handler = Handler::find_optional(conn, log.handler_id)?;
    let name = match &handler {
        Some(h) => Some(h.name.clone()),
        None => Handler::names(conn, &[log.handler_id])?.remove(&log.handler_id),
    };
    Ok(Details { log, delivery, others, handler, name })
}

#[get("/provisioning/logs/{log_id:\\d+}")]
pub async fn show_log(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    log_id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let log_id = log_id.into_inner();
    let Details { log, delivery, others, handler, name } =
        state.db.read(move |conn| load_details(conn, log_id)).await?;
    let payload = serde_json::from_str::<serde_json::Value>(&log.request_body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| log.request_body.clone());
    let headers = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&log.request_headers)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect())
        .unwrap_or_default();
    let attempts = others.iter().map(|o| AttemptRow::new(o, log.id)).collect();
    let finished = delivery.as_ref().is_some_and(|d| d.state.is_finished());
    let target_now =
        handler.as_ref().map(|h| h.target.clone()).filter(|now| log.target.as_ref().is_some_and(|t| t != now));
    let latest = others.last().filter(|latest| latest.id != log.id);
    let now_headline = delivery.as_ref().zip(latest).map(|(d, latest)| {
        format!("Delivery #{} is now {} (attempt {} was the latest).", d.id, describe_state(d), latest.attempt)
    });
    let resend_question =
        delivery.as_ref().filter(|d| d.state == DeliveryState::Succeeded).map(|d| resend_question(d.id));
    let page = LogDetailPage {
        target_now,
        now_headline,
        resend_question,
        layout: Layout::new(&admin, format!("Execution Log #{}", log.id), "logs"),
        success: log.outcome == Outcome::Success,
        handler_name: name.unwrap_or_else(|| format!("#{} (deleted)", log.handler_id)),
        event_label: event_label(&log.events_id),
        payload,
        headers,
        delivery_state: delivery.as_ref().map_or_else(|| "deleted".to_owned(), describe_state),
        finished,
        delivery,
        attempts,
        started_at: log.started_at.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        next_attempt_at: log.next_attempt_at.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        log,
    };
    render(StatusCode::OK, &page)
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct RetryForm {
    return_to: String,
    /// `yes` once asked: retrying a delivery that succeeded sends its event again.
    confirm: String,
}

/// What retrying a delivery that succeeded asks first.
pub fn resend_question(id: i64) -> String {
    format!(
        "Delivery #{id} succeeded already. Retrying it sends its event to the handler again — for a client, \
         that may provision it twice. Send it again?"
    )
}

/// Queues a finished delivery again (one more attempt) and goes back to its details.
#[post("/provisioning/deliveries/{id:\\d+}/retry")]
pub async fn retry_delivery(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<RetryForm>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let CsrfForm { admin, form } = input;
    if form.confirm != "yes" {
        admin.actor.must(crate::service::Action::Retry)?;
        let delivery = state.db.read(move |conn| Delivery::find_optional(conn, id)).await?;
        if delivery.is_some_and(|d| d.state == DeliveryState::Succeeded) {
            let page = ConfirmPage {
                layout: Layout::new(&admin, format!("Send delivery #{id} again?"), "logs"),
                question: resend_question(id),
                action: format!("/provisioning/deliveries/{id}/retry"),
                hidden: vec![("return_to", form.return_to.clone())],
                button: "Send it again",
                button_class: "danger",
                back: safe_local(&form.return_to, "/provisioning/logs"),
            };
            return render(StatusCode::OK, &page);
        }
    }
    let message = match state.retry_delivery(&admin.actor, id).await {
        Ok(_) => format!("Delivery #{id} queued again: its new attempt appears below as soon as it has run."),
        Err(Refusal::NotFinished(_)) => {
            format!("Delivery #{id} is still pending or in flight; it can be retried once it has finished.")
        }
        Err(refusal) => return Err(refusal.into()),
    };
    admin.flash(&state, message).await?;
    Ok(see_other(&safe_local(&form.return_to, "/provisioning/logs")))
}

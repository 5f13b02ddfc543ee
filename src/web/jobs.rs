//! Bulk retries and replays in the browser (DESIGN §8.5): from a filter of
//! the deliveries or events list, the count first (a dry run) on a page that
//! asks for confirmation (`confirm=yes`), then the job's progress page, which
//! refreshes itself while the job runs and can cancel it.

use actix_web::{HttpResponse, get, http::StatusCode, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render, see_other,
    session::{CsrfForm, CurrentAdmin},
    views::utc,
    views::{Layout, event_label, query_string},
};
use crate::{
    db::jobs::{BulkJob, JobKind, JobState},
    error::{AppError, AppResult},
    service::{
        AppState, Missing, Refusal,
        filters::{DeliveryQuery, EventQuery, in_one_line},
    },
};

/// The filters of a job or a form, as name → value lines (the blank ones left out).
fn summary(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| {
            let value = if *k == "Event" { event_label(v.trim()) } else { v.trim().to_owned() };
            ((*k).to_owned(), value)
        })
        .collect();
    if lines.is_empty() {
        lines.push(("Filters".into(), "none: everything".into()));
    }
    lines
}

fn delivery_summary(q: &DeliveryQuery) -> Vec<(String, String)> {
    summary(&[
        ("State", &q.state),
        ("Event", &q.event),
        ("Handler ID", &q.handler_id),
        ("Event ID", &q.event_id),
        ("Object ID", &q.object_id),
        ("Created from (UTC)", &q.from),
        ("to (UTC)", &q.to),
    ])
}

fn event_summary(q: &EventQuery) -> Vec<(String, String)> {
    summary(&[("Event", &q.event), ("Object ID", &q.object_id), ("Received from (UTC)", &q.from), ("to (UTC)", &q.to)])
}

fn delivery_fields(q: &DeliveryQuery) -> Vec<(&'static str, String)> {
    [
        ("handler_id", &q.handler_id),
        ("event_id", &q.event_id),
        ("event", &q.event),
        ("state", &q.state),
        ("object_id", &q.object_id),
        ("from", &q.from),
        ("to", &q.to),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.clone()))
    .collect()
}

fn event_fields(q: &EventQuery) -> Vec<(&'static str, String)> {
    [("event", &q.event), ("object_id", &q.object_id), ("from", &q.from), ("to", &q.to)]
        .into_iter()
        .map(|(k, v)| (k, v.clone()))
        .collect()
}

fn link(path: &str, fields: &[(&'static str, String)]) -> String {
    let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    match query_string(&pairs) {
        q if q.is_empty() => path.to_owned(),
        q => format!("{path}?{q}"),
    }
}

#[derive(Template)]
#[template(path = "jobs/confirm.html")]
pub struct ConfirmBulkPage {
    pub layout: Layout,
    pub action: &'static str,
    pub kind: &'static str,
    pub noun: &'static str,
    pub nouns: &'static str,
    pub matched: i64,
    pub succeeded: i64,
    pub explanation: String,
    pub button: String,
    pub summary: Vec<(String, String)>,
    pub hidden: Vec<(&'static str, String)>,
    pub back: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct BulkRetryForm {
    #[serde(flatten)]
    filters: DeliveryQuery,
    confirm: String,
}

/// "Retry these…" from a deliveries filter: the count and a confirmation;
/// confirmed (`confirm=yes`), the job, and its progress page.
#[post("/provisioning/deliveries/retry")]
pub async fn bulk_retry(state: web::Data<AppState>, input: CsrfForm<BulkRetryForm>) -> AppResult<HttpResponse> {
    let CsrfForm { admin, form } = input;
    let dry_run = form.confirm != "yes";
    let hidden = delivery_fields(&form.filters);
    let back = link("/provisioning/deliveries", &hidden);
    let summary = delivery_summary(&form.filters);
    let started = match state.bulk_retry(&admin.actor, form.filters, dry_run).await {
        Err(Refusal::AlreadyRunning(job)) => return already_running(&state, &admin, job).await,
        other => other.map_err(bad_filter)?,
    };
    match started.job {
        Some(job) => started_page(&state, &admin, &job).await,
        None => {
            let page = ConfirmBulkPage {
                layout: Layout::new(&admin, "Retry deliveries", "deliveries"),
                action: "/provisioning/deliveries/retry",
                kind: "retry",
                noun: "delivery",
                nouns: "deliveries",
                matched: started.matched,
                succeeded: started.succeeded,
                explanation: "Each gets one more attempt now, outside the priority chain, one object's deliveries in \
                              the order they were made; those waiting for a retry are made due now. It runs in the \
                              background, and you can watch it and cancel it."
                    .into(),
                button: format!("Retry these {}", started.matched),
                summary,
                hidden,
                back,
            };
            render(StatusCode::OK, &page)
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ReplayForm {
    #[serde(flatten)]
    filters: EventQuery,
    handler_id: String,
    confirm: String,
}

/// "Replay to a handler" from an events filter: the count and a
/// confirmation; confirmed, the job and its progress page.
#[post("/provisioning/replay")]
pub async fn replay(state: web::Data<AppState>, input: CsrfForm<ReplayForm>) -> AppResult<HttpResponse> {
    let CsrfForm { admin, form } = input;
    let handler_id: i64 = form
        .handler_id
        .trim()
        .parse()
        .map_err(|_| AppError::BadRequest("Choose the handler to replay the events to.".into()))?;
    let dry_run = form.confirm != "yes";
    let mut hidden = event_fields(&form.filters);
    let back = link("/provisioning/events", &hidden);
    let mut summary = event_summary(&form.filters);
    let started = match state.replay(&admin.actor, handler_id, form.filters, dry_run).await {
        Err(Refusal::AlreadyRunning(job)) => return already_running(&state, &admin, job).await,
        other => other.map_err(bad_filter)?,
    };
    match started.job {
        Some(job) => started_page(&state, &admin, &job).await,
        None => {
            let name = state
                .db
                .read(move |conn| crate::db::handlers::Handler::names(conn, &[handler_id]))
                .await?
                .remove(&handler_id)
                .unwrap_or_default();
            summary.insert(0, ("To handler".into(), format!("#{handler_id} {name}")));
            hidden.push(("handler_id", handler_id.to_string()));
            let page = ConfirmBulkPage {
                layout: Layout::new(&admin, format!("Replay events to handler #{handler_id}"), "events"),
                action: "/provisioning/replay",
                kind: "replay",
                noun: "event",
                nouns: "events",
                matched: started.matched,
                succeeded: 0,
                explanation: format!(
                    "Each becomes a new delivery to “{name}”, attempted now in the order received (one object's in \
                     order), with a webhook-id of its own. It runs in the background, and you can watch it and \
                     cancel it."
                ),
                button: format!("Replay these {}", started.matched),
                summary,
                hidden,
                back,
            };
            render(StatusCode::OK, &page)
        }
    }
}

/// A filter that does not read is the page's 400, with what is wrong.
fn bad_filter(refusal: Refusal) -> AppError {
    match refusal {
        Refusal::Invalid(errors) => AppError::BadRequest(in_one_line(&errors)),
        other => other.into(),
    }
}

/// A confirmation sent twice (a double click): the job the first one started.
async fn already_running(state: &AppState, admin: &CurrentAdmin, job: i64) -> AppResult<HttpResponse> {
    admin.flash(state, format!("The same bulk action is running already: job #{job}, here.")).await?;
    Ok(see_other(&format!("/provisioning/jobs/{job}")))
}

async fn started_page(state: &AppState, admin: &CurrentAdmin, job: &BulkJob) -> AppResult<HttpResponse> {
    let what = if job.kind == JobKind::Retry { "Bulk retry" } else { "Replay" };
    admin.flash(state, format!("{what} #{} started: {} to go.", job.id, job.matched)).await?;
    Ok(see_other(&format!("/provisioning/jobs/{}", job.id)))
}

#[derive(Template)]
#[template(path = "jobs/show.html")]
pub struct JobPage {
    pub layout: Layout,
    pub job: BulkJob,
    pub running: bool,
    pub state_text: String,
    pub percent: i64,
    pub progress_max: i64,
    pub progress_value: i64,
    pub noun: &'static str,
    pub verb: &'static str,
    pub created_at: String,
    pub finished_at: Option<String>,
    pub summary: Vec<(String, String)>,
    pub deliveries_url: String,
}

#[get("/provisioning/jobs/{id:\\d+}")]
pub async fn show_job(state: web::Data<AppState>, admin: CurrentAdmin, id: web::Path<i64>) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let job = state
        .db
        .read(move |conn| BulkJob::find(conn, id))
        .await
        .map_err(|e| if e.is_not_found() { Refusal::NotFound(Missing::Job(id)) } else { Refusal::Db(e) })?;
    let (summary, deliveries_url, noun, verb) = match job.kind {
        JobKind::Retry => {
            let q: DeliveryQuery = serde_json::from_str(&job.filter).unwrap_or_default();
            // What it queued is no longer failed: the handler's (or all) deliveries now.
            let mut fields = delivery_fields(&q);
            fields.retain(|(k, _)| *k != "state");
            (delivery_summary(&q), link("/provisioning/deliveries", &fields), "deliveries", "queued again")
        }
        JobKind::Replay => {
            let q: EventQuery = serde_json::from_str(&job.filter).unwrap_or_default();
            let mut summary = event_summary(&q);
            let handler = job.handler_id.unwrap_or_default();
            summary.insert(0, ("To handler".into(), format!("#{handler}")));
            (summary, format!("/provisioning/deliveries?handler_id={handler}"), "events", "replayed")
        }
    };
    let percent = if job.matched == 0 { 100 } else { (job.done.min(job.matched) * 100) / job.matched };
    let state_text = match job.state {
        JobState::Running => format!("Running: {percent} % done"),
        JobState::Done => "Done".to_owned(),
        JobState::Cancelled => "Cancelled: what was done stays done".to_owned(),
    };
    let title = format!("{} #{}", if job.kind == JobKind::Retry { "Bulk retry" } else { "Replay" }, job.id);
    let page = JobPage {
        layout: Layout::new(&admin, title, "deliveries"),
        running: job.state == JobState::Running,
        state_text,
        percent,
        progress_max: job.matched.max(1),
        progress_value: job.done.min(job.matched),
        noun,
        verb,
        created_at: utc(job.created_at),
        finished_at: job.finished_at.map(utc),
        summary,
        deliveries_url,
        job,
    };
    render(StatusCode::OK, &page)
}

/// One job as listed.
pub struct JobRow {
    pub id: i64,
    pub kind: &'static str,
    pub state: &'static str,
    pub matched: i64,
    pub done: i64,
    pub created_at: String,
    pub created_by: String,
}

#[derive(Template)]
#[template(path = "jobs/list.html")]
pub struct JobsPage {
    pub layout: Layout,
    pub rows: Vec<JobRow>,
}

#[get("/provisioning/jobs")]
pub async fn list_jobs(state: web::Data<AppState>, admin: CurrentAdmin) -> AppResult<HttpResponse> {
    let jobs = state.db.read(|conn| BulkJob::recent(conn, 100)).await?;
    let rows = jobs
        .into_iter()
        .map(|j| JobRow {
            id: j.id,
            kind: j.kind.as_str(),
            state: j.state.as_str(),
            matched: j.matched,
            done: j.done,
            created_at: utc(j.created_at),
            created_by: j.created_by,
        })
        .collect();
    render(StatusCode::OK, &JobsPage { layout: Layout::new(&admin, "Bulk jobs", "deliveries"), rows })
}

#[derive(Debug, Deserialize, Default)]
pub struct CancelForm {}

#[post("/provisioning/jobs/{id:\\d+}/cancel")]
pub async fn cancel_job(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<CancelForm>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let admin = input.admin;
    let message = match state.cancel_job(&admin.actor, id).await {
        Ok(job) => format!("Job #{id} cancelled after {} of {}; what was done stays done.", job.done, job.matched),
        Err(Refusal::Conflict(m)) => format!("Nothing to cancel: {m}."),
        Err(refusal) => return Err(refusal.into()),
    };
    admin.flash(&state, message).await?;
    Ok(see_other(&format!("/provisioning/jobs/{id}")))
}

//! `/api/v1`'s bulk actions (DESIGN §8.5): a bulk retry from a deliveries
//! filter, a replay of an events filter to one handler, and their jobs.

use actix_web::{HttpResponse, web};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    auth::ApiClient,
    parse_id, read_json_object,
    shapes::{BulkOut, JobList, JobOut},
};
use crate::{
    db::jobs::BulkJob,
    domain::FieldErrors,
    error::{ApiError, ApiResult},
    service::{
        AppState, Missing, Refusal,
        filters::{DeliveryQuery, EventQuery},
    },
};

/// A body of filter fields and `dry_run` (true when absent: a bulk action is
/// only counted unless asked for): the filter, as the list's query would
/// read it, and whether it is a dry run.
fn filter_and_dry_run<Q: DeserializeOwned>(body: Map<String, Value>, fields: &[&str]) -> ApiResult<(Q, bool)> {
    let mut errors = FieldErrors::default();
    let mut dry_run = true;
    let mut filter = Map::new();
    for (key, value) in body {
        if key == "dry_run" {
            match value {
                Value::Bool(b) => dry_run = b,
                _ => errors.add("dry_run", "must be true or false"),
            }
            continue;
        }
        if !fields.contains(&key.as_str()) {
            errors.add(&key, format!("unknown field; the fields are {}, dry_run", fields.join(", ")));
            continue;
        }
        match super::form_text(value) {
            Some(text) => drop(filter.insert(key, Value::String(text))),
            None => errors.add(&key, "must be a string or a number"),
        }
    }
    if !errors.is_empty() {
        return Err(Refusal::Invalid(errors).into());
    }
    let filter = serde_json::from_value(Value::Object(filter)).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((filter, dry_run))
}

/// An answer: 200 with the count for a dry run, 202 with the job once started.
fn answer(out: BulkOut) -> HttpResponse {
    if out.dry_run { HttpResponse::Ok().json(out) } else { HttpResponse::Accepted().json(out) }
}

/// `POST /api/v1/deliveries/retry`: the deliveries list's filters as JSON and
/// `dry_run`.
pub async fn bulk_retry(client: ApiClient, state: web::Data<AppState>, body: web::Payload) -> ApiResult<HttpResponse> {
    let body = read_json_object(body, state.settings.max_body_bytes).await?;
    let fields = ["handler_id", "event_id", "event", "state", "object_id", "from", "to"];
    let (query, dry_run): (DeliveryQuery, bool) = filter_and_dry_run(body, &fields)?;
    let started = state.bulk_retry(&client.actor, query, dry_run).await?;
    Ok(answer(started.into()))
}

/// `POST /api/v1/handlers/{id}/replay`: the events list's filters as JSON
/// (`event`, `object_id`, `from`, `to`) and `dry_run`.
pub async fn replay(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Payload,
) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let body = read_json_object(body, state.settings.max_body_bytes).await?;
    let (query, dry_run): (EventQuery, bool) = filter_and_dry_run(body, &["event", "object_id", "from", "to"])?;
    let started = state.replay(&client.actor, id, query, dry_run).await?;
    Ok(answer(started.into()))
}

/// `GET /api/v1/jobs`: the newest 100 jobs.
pub async fn list_jobs(_: ApiClient, state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let jobs = state.db.read(|conn| BulkJob::recent(conn, 100)).await?;
    Ok(HttpResponse::Ok().json(JobList { jobs: jobs.into_iter().map(JobOut::from).collect() }))
}

/// `GET /api/v1/jobs/{id}`.
pub async fn get_job(_: ApiClient, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult<HttpResponse> {
    let id = parse_id(&id)?;
    let job = state
        .db
        .read(move |conn| BulkJob::find(conn, id))
        .await
        .map_err(|e| if e.is_not_found() { Refusal::NotFound(Missing::Job(id)) } else { Refusal::Db(e) })?;
    Ok(HttpResponse::Ok().json(JobOut::from(job)))
}

/// `POST /api/v1/jobs/{id}/cancel`: stops a running job (409 when it is not).
pub async fn cancel_job(
    client: ApiClient,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult<HttpResponse> {
    let job = state.cancel_job(&client.actor, parse_id(&id)?).await?;
    Ok(HttpResponse::Ok().json(JobOut::from(job)))
}

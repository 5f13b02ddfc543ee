//! The server-rendered web UI (askama). Every page works without JavaScript.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod deliveries;
pub mod events;
pub mod handler_list;
pub mod handlers;
pub mod help;
pub mod jobs;
pub mod logs;
pub mod session;
pub mod settings;
pub mod test_event;
pub mod timeline;
pub mod views;

use actix_web::{HttpResponse, get, http::StatusCode, http::header, web};
use askama::Template;

use crate::{error::AppResult, service::AppState};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(auth::login_form)
        .service(auth::login)
        .service(auth::logout)
        .service(home)
        .service(healthz)
        .service(readyz)
        .service(metrics)
        .service(static_file)
        .service(logs::list_all_logs)
        .service(logs::show_log)
        .service(logs::retry_delivery)
        .service(deliveries::list_deliveries)
        .service(jobs::bulk_retry)
        .service(jobs::replay)
        .service(jobs::show_job)
        .service(jobs::list_jobs)
        .service(jobs::cancel_job)
        .service(alerts::list_alerts)
        .service(events::list_events)
        .service(timeline::show_timeline)
        .service(help::handlers_guide)
        .service(help::event_samples)
        .service(test_event::test_event_form)
        .service(test_event::send_test_event)
        .service(handler_list::list_handlers)
        .service(handlers::new_handler_form)
        .service(handlers::create_handler)
        .service(handlers::edit_handler_form)
        .service(handlers::update_handler)
        .service(handlers::change_handler_status)
        .service(handlers::confirm_delete_handler)
        .service(handlers::delete_handler)
        .service(handlers::rotate_handler_secret)
        .service(logs::list_handler_logs)
        .service(settings::list_users)
        .service(settings::create_user)
        .service(settings::update_user)
        .service(settings::confirm_delete_user)
        .service(settings::delete_user)
        .service(settings::password_form)
        .service(settings::change_password)
        .service(settings::list_tokens)
        .service(settings::create_token)
        .service(settings::revoke_token)
        .service(audit::show_audit)
        .default_service(web::to(not_found));
}

/// Renders a page with a status.
pub fn render(status: StatusCode, page: &impl Template) -> AppResult<HttpResponse> {
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

/// The answer to a successful POST: 303 to the next page.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

#[get("/")]
async fn home() -> HttpResponse {
    see_other("/provisioning")
}

#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.db.ping().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %crate::diagnostics::cause_chain(&e), "not ready");
            HttpResponse::ServiceUnavailable()
                .insert_header(("Retry-After", crate::error::RETRY_AFTER_SECS.to_string()))
                .json(serde_json::json!({ "status": "database unavailable", "error": "the database is unavailable" }))
        }
    }
}

/// Prometheus metrics: counters of this process and the database's backlog.
/// They need a `read` (or `admin`) bearer token unless `PROVISIOND_METRICS_PUBLIC` is set.
#[get("/metrics")]
async fn metrics(req: actix_web::HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.settings.metrics_public {
        let actor = match crate::security::bearer_token(req.headers()) {
            Some(token) => state.authenticate(token).await,
            None => Ok(None),
        };
        match actor {
            Ok(Some(actor)) if actor.may(crate::service::Action::Read) => {}
            Ok(Some(_)) => {
                return HttpResponse::Forbidden()
                    .content_type("text/plain")
                    .body("this token's scope may not read metrics\n");
            }
            Ok(None) => {
                return HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .content_type("text/plain")
                    .body("/metrics needs a bearer token of scope read (or PROVISIOND_METRICS_PUBLIC=true)\n");
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check the metrics token");
                return HttpResponse::ServiceUnavailable()
                    .content_type("text/plain")
                    .body("the database is unavailable\n");
            }
        }
    }
    let figures = crate::dispatcher::DatabaseFigures {
        sqlite_writer: state.db.writer_counts(),
        unfinished_deliveries: state.db.read(crate::db::deliveries::Delivery::count_unfinished).await.ok(),
    };
    let text = state.dispatcher().metrics().prometheus(&figures);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(text)
}

/// Static files, compiled into the binary so it runs from any directory.
#[get("/static/{file}")]
async fn static_file(file: web::Path<String>) -> HttpResponse {
    let (body, content_type) = match file.as_str() {
        "app.css" => (include_str!("../../static/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../../static/app.js"), "text/javascript; charset=utf-8"),
        "favicon.svg" => (include_str!("../../static/favicon.svg"), "image/svg+xml"),
        _ => {
            return HttpResponse::NotFound().content_type("text/plain").body("no such file");
        }
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}

async fn not_found() -> AppResult<HttpResponse> {
    Err(crate::error::AppError::NotFound("There is no page at this address.".into()))
}

//! "Send test event" (DESIGN §8.5): the handler's page with the sample of its
//! event, editable; sent, the outcome, status, duration and response at once,
//! on the same page (no redirect: the answer is the point).

use actix_web::{HttpResponse, get, http::StatusCode, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render,
    session::{CsrfForm, CurrentAdmin},
    views::{Layout, event_label},
};
use crate::{
    db::{handlers::Handler, logs::ExecutionLog},
    domain::Outcome,
    error::AppResult,
    service::{AppState, Refusal, sample_envelope},
};

#[derive(Template)]
#[template(path = "handlers/test.html")]
pub struct TestEventPage {
    pub layout: Layout,
    pub handler: Handler,
    pub event_label: String,
    pub payload: String,
    pub payload_error: Option<String>,
    /// The attempt just sent.
    pub result: Option<ExecutionLog>,
    pub success: bool,
}

impl TestEventPage {
    fn new(admin: &CurrentAdmin, handler: Handler, payload: String) -> Self {
        Self {
            layout: Layout::new(admin, format!("Test handler #{}", handler.id), "handlers"),
            event_label: event_label(&handler.events_id),
            handler,
            payload,
            payload_error: None,
            result: None,
            success: false,
        }
    }
}

#[get("/provisioning/{id:\\d+}/test")]
pub async fn test_event_form(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
    let payload = sample_envelope(&handler.events_id);
    render(StatusCode::OK, &TestEventPage::new(&admin, handler, payload))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct TestForm {
    payload: String,
}

#[post("/provisioning/{id:\\d+}/test")]
pub async fn send_test_event(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<TestForm>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let CsrfForm { admin, form } = input;
    match state.send_test_event(&admin.actor, id, &form.payload).await {
        Ok(sent) => {
            let mut page = TestEventPage::new(&admin, sent.handler, form.payload);
            page.success = sent.log.outcome == Outcome::Success;
            page.result = Some(sent.log);
            render(StatusCode::OK, &page)
        }
        Err(Refusal::Invalid(errors)) => {
            let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
            let mut page = TestEventPage::new(&admin, handler, form.payload);
            page.payload_error = errors.iter().map(|(_, m)| m.to_owned()).next();
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(refusal) => Err(refusal.into()),
    }
}

//! The handler pages but the list (`handler_list.rs`): the New/Edit form,
//! status, delete, the secret's rotation.

use actix_web::{HttpResponse, get, http::StatusCode, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render, see_other,
    session::{CsrfForm, CurrentAdmin, safe_local},
    views::{ConfirmPage, EventGroup, Layout, event_groups},
};
use crate::{
    db::handlers::Handler,
    domain::{FieldErrors, HandlerForm, HandlerStatus},
    error::{AppError, AppResult},
    service::{Action, AppState, Refusal},
};

/// A duration as a person reads it: `24h`, `90m`, `30s`.
fn humantime(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => "no time at all".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[derive(Template)]
#[template(path = "handlers/form.html")]
pub struct HandlerFormPage {
    pub layout: Layout,
    pub heading: String,
    pub action: String,
    pub form: HandlerForm,
    pub errors: FieldErrors,
    /// Set when editing.
    pub handler: Option<Handler>,
    pub groups: Vec<EventGroup>,
    pub scripts_dir: String,
    /// After a rotation, until when the previous secret also signs (UTC).
    pub previous_signs_until: Option<String>,
    /// How long a rotated secret goes on signing, as configured.
    /// What rotating the secret asks first.
    pub rotation_question: String,
    /// The `whpk_` key of a `v1a` handler (public: shown to every role).
    pub public_key: Option<String>,
    /// The server's retry schedule, which a blank field means.
    pub global_schedule: String,
}

impl HandlerFormPage {
    fn new(
        state: &AppState,
        admin: &CurrentAdmin,
        handler: Option<Handler>,
        form: HandlerForm,
        errors: FieldErrors,
    ) -> Self {
        let (heading, action) = match &handler {
            Some(h) => (format!("Edit Handler #{}", h.id), format!("/provisioning/{}", h.id)),
            None => ("New Handler".to_owned(), "/provisioning".to_owned()),
        };
        let previous_signs_until = handler
            .as_ref()
            .and_then(|h| h.previous_secret_until)
            .filter(|t| *t > crate::db::now())
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        let public_key = handler.as_ref().and_then(|h| crate::domain::signing::public_key(&h.secret));
        let rotation_question =
            rotation_question(handler.as_ref().map_or("", |h| h.name.as_str()), state.settings.secret_overlap);
        Self {
            layout: Layout::new(admin, heading.clone(), "handlers"),
            heading,
            action,
            form,
            errors,
            handler,
            groups: event_groups(),
            scripts_dir: state.settings.scripts_dir.display().to_string(),
            previous_signs_until,
            rotation_question,
            global_schedule: state.settings.retry_schedule.to_string(),
            public_key,
        }
    }
}

#[get("/provisioning/new")]
pub async fn new_handler_form(state: web::Data<AppState>, admin: CurrentAdmin) -> AppResult<HttpResponse> {
    let form = HandlerForm {
        handler_type: "http".into(),
        status: "enabled".into(),
        priority: "0".into(),
        timeout_ms: crate::domain::handler::TIMEOUT_MS_DEFAULT.to_string(),
        ..HandlerForm::default()
    };
    render(StatusCode::OK, &HandlerFormPage::new(&state, &admin, None, form, FieldErrors::default()))
}

#[post("/provisioning")]
pub async fn create_handler(state: web::Data<AppState>, input: CsrfForm<HandlerForm>) -> AppResult<HttpResponse> {
    let CsrfForm { admin, form } = input;
    let handler = match state.create_handler(&admin.actor, &form).await {
        Ok(handler) => handler,
        Err(Refusal::Invalid(errors)) => {
            let page = HandlerFormPage::new(&state, &admin, None, form, errors);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        Err(refusal) => return Err(refusal.into()),
    };
    let (message, list) = created_message(&handler);
    admin.flash(&state, message).await?;
    Ok(see_other(&list))
}

/// What creating `handler` says, by its status, and the list it is in (its row
/// marked): a disabled or archived handler receives no event.
fn created_message(handler: &Handler) -> (String, String) {
    let (name, id) = (&handler.name, handler.id);
    match handler.status {
        HandlerStatus::Enabled => (
            format!("Handler “{name}” created (#{id}). It applies to the next event."),
            format!("/provisioning#handler-{id}"),
        ),
        HandlerStatus::Disabled => (
            format!(
                "Handler “{name}” created (#{id}), disabled: it receives no event until you enable it (the status \
                 button in its row). Send it a test event meanwhile."
            ),
            format!("/provisioning#handler-{id}"),
        ),
        HandlerStatus::Paused => (
            format!(
                "Handler “{name}” created (#{id}), paused: its events wait as deliveries, none is sent until you \
                 resume it (the ▶ button in its row)."
            ),
            format!("/provisioning#handler-{id}"),
        ),
        HandlerStatus::Archived => (
            format!(
                "Handler “{name}” created (#{id}), archived: it receives no event, and the list shows it only with \
                 Advanced Search → Status: Archived, as here."
            ),
            format!("/provisioning?status=archived#handler-{id}"),
        ),
    }
}

#[get("/provisioning/{id:\\d+}/edit")]
pub async fn edit_handler_form(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
    let form = handler.to_form();
    render(StatusCode::OK, &HandlerFormPage::new(&state, &admin, Some(handler), form, FieldErrors::default()))
}

#[post("/provisioning/{id:\\d+}")]
pub async fn update_handler(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<HandlerForm>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let CsrfForm { admin, form } = input;
    let handler = match state.update_handler(&admin.actor, id, &form).await {
        Ok(handler) => handler,
        Err(Refusal::Invalid(errors)) => {
            let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
            let page = HandlerFormPage::new(&state, &admin, Some(handler), form, errors);
            return render(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        Err(refusal) => return Err(refusal.into()),
    };
    admin.flash(&state, format!("Handler “{}” saved. The change applies to the next event.", handler.name)).await?;
    Ok(see_other("/provisioning"))
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct StatusForm {
    status: String,
    return_to: String,
}

/// Sets the status given, or without one toggles enabled/disabled.
#[post("/provisioning/{id:\\d+}/status")]
pub async fn change_handler_status(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<StatusForm>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let CsrfForm { admin, form } = input;
    let wanted = match form.status.trim() {
        "" => None,
        s => Some(s.parse::<HandlerStatus>().map_err(|_| {
            AppError::BadRequest(format!("Unknown status `{s}`: use enabled, paused, disabled or archived."))
        })?),
    };
    let handler = state.set_handler_status(&admin.actor, id, wanted).await?;
    admin.flash(&state, format!("Handler “{}” is now {}.", handler.name, handler.status)).await?;
    // Back to the row that was toggled, however far down the list.
    let back = safe_local(&form.return_to, "/provisioning");
    Ok(see_other(&format!("{}#handler-{id}", back.split('#').next().unwrap_or("/provisioning"))))
}

#[derive(Template)]
#[template(path = "handlers/delete.html")]
pub struct DeleteHandlerPage {
    pub layout: Layout,
    pub handler: Handler,
}

/// The confirmation asked before a delete (the page without JavaScript; the
/// pop-up asks the same question where JavaScript runs).
#[get("/provisioning/{id:\\d+}/delete")]
pub async fn confirm_delete_handler(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    id: web::Path<i64>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
    let layout = Layout::new(&admin, format!("Delete Handler #{}", handler.id), "handlers");
    render(StatusCode::OK, &DeleteHandlerPage { layout, handler })
}

#[derive(Debug, Deserialize, Default)]
pub struct NoFields {}

#[post("/provisioning/{id:\\d+}/delete")]
pub async fn delete_handler(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<NoFields>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let handler = state.delete_handler(&input.admin.actor, id).await?;
    input.admin.flash(&state, format!("Handler “{}” (#{}) deleted.", handler.name, handler.id)).await?;
    Ok(see_other("/provisioning"))
}

/// Replaces the signing secret; the old one stops verifying at once.
#[post("/provisioning/{id:\\d+}/secret")]
pub async fn rotate_handler_secret(
    state: web::Data<AppState>,
    id: web::Path<i64>,
    input: CsrfForm<ConfirmForm>,
) -> AppResult<HttpResponse> {
    let id = id.into_inner();
    let CsrfForm { admin, form } = input;
    if form.confirm != "yes" {
        admin.actor.must(Action::RotateSecrets)?;
        let handler = state.db.read(move |conn| Handler::find(conn, id)).await?;
        let page = ConfirmPage {
            layout: Layout::new(&admin, format!("Rotate the secret of handler #{id}?"), "handlers"),
            question: rotation_question(&handler.name, state.settings.secret_overlap),
            action: format!("/provisioning/{id}/secret"),
            hidden: Vec::new(),
            button: "Rotate secret",
            button_class: "danger",
            back: format!("/provisioning/{id}/edit"),
        };
        return render(StatusCode::OK, &page);
    }
    let handler = state.rotate_handler_secret(&admin.actor, id).await?;
    let message = match handler.previous_secret_until {
        Some(until) => format!(
            "Handler “{}” has a new signing secret; the old one also signs until {} UTC.",
            handler.name,
            until.format("%Y-%m-%d %H:%M:%S")
        ),
        None => format!("Handler “{}” has a new signing secret; the old one no longer signs.", handler.name),
    };
    admin.flash(&state, message).await?;
    Ok(see_other(&format!("/provisioning/{id}/edit")))
}

/// A change that asks first: `confirm=yes` once asked.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ConfirmForm {
    pub confirm: String,
}

/// What rotating a secret asks, in the pop-up and on the page alike.
pub fn rotation_question(name: &str, overlap: std::time::Duration) -> String {
    format!(
        "Replace the signing secret of “{name}”? The old one goes on signing beside the new one for {}; after that, \
         an endpoint verifying only the old one rejects the calls.",
        humantime(overlap)
    )
}

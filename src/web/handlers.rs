//! The handler pages: list with Advanced Search, New/Edit form, status, delete.

use actix_web::{HttpResponse, get, http::StatusCode, post, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render, see_other,
    session::{CsrfForm, CurrentAdmin, safe_local},
    views::{ConfirmPage, EventGroup, Layout, Pager, event_groups, event_label, parse_page},
};
use crate::{
    db::{
        handlers::{Handler, HandlerFilter, HandlerSort, SortColumn},
        logs::HandlerHealth,
    },
    domain::{FieldErrors, HandlerForm, HandlerStatus, HandlerType, Outcome},
    error::{AppError, AppResult},
    service::{Action, AppState, Refusal},
};

/// The Advanced Search parameters, as typed in the URL.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    event: String,
    #[serde(rename = "type")]
    handler_type: String,
    status: String,
    /// Text the name or the target contains.
    q: String,
    /// The column sorted by, and `dir=desc` for the other way.
    sort: String,
    dir: String,
    page: String,
}

impl ListQuery {
    fn filter(&self) -> Result<HandlerFilter, String> {
        let events_id = match self.event.trim() {
            "" => None,
            e if crate::catalogue::find(e).is_some() => Some(e.to_owned()),
            e => return Err(format!("There is no event `{e}` in the catalogue.")),
        };
        let handler_type = match self.handler_type.trim() {
            "" => None,
            t => {
                Some(t.parse::<HandlerType>().map_err(|_| format!("Unknown handler type `{t}`: use http or script."))?)
            }
        };
        let status = match self.status.trim() {
            "" => None,
            s => Some(
                s.parse::<HandlerStatus>()
                    .map_err(|_| format!("Unknown status `{s}`: use enabled, paused, disabled or archived."))?,
            ),
        };
        let sort = match self.sort.trim() {
            "" => SortColumn::default(),
            s => SortColumn::parse(s).ok_or_else(|| {
                format!("Unknown column `{s}`: sort by id, priority, name, event, type, target or status.")
            })?,
        };
        let sort = HandlerSort { column: sort, descending: self.dir.trim() == "desc" };
        let text = Some(self.q.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(HandlerFilter { events_id, handler_type, status, text, sort })
    }

    /// The link that sorts the list by `column`: ascending, or the other way
    /// when it is sorted so already; the filters kept, back to page 1.
    pub fn sort_link(&self, column: &str) -> String {
        let descending = self.sort.trim() == column && self.dir.trim() != "desc";
        let mut pairs = self.filter_pairs();
        pairs.push(("sort", column));
        if descending {
            pairs.push(("dir", "desc"));
        }
        format!("/provisioning?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
    }

    /// `aria-sort` of a column's header.
    pub fn aria_sort(&self, column: &str) -> &'static str {
        let sorted = self.sort.trim();
        let current = if sorted.is_empty() { "priority" } else { sorted };
        match (current == column, self.dir.trim() == "desc") {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        }
    }

    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        [("q", &self.q), ("event", &self.event), ("type", &self.handler_type), ("status", &self.status)]
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k, v.trim()))
            .collect()
    }

    /// The filters and the order as a query string, without the page.
    fn filters_query(&self) -> String {
        let mut pairs = self.filter_pairs();
        for (k, v) in [("sort", &self.sort), ("dir", &self.dir)] {
            if !v.trim().is_empty() {
                pairs.push((k, v.trim()));
            }
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// One row of the handler list.
pub struct HandlerRow {
    pub id: i64,
    pub priority: i32,
    pub name: String,
    pub events_id: String,
    pub event_label: String,
    pub handler_type: String,
    pub target: String,
    /// Set only when it is not the target (DESIGN §4.4).
    pub ordering_group: Option<String>,
    pub status: String,
    pub health: HealthView,
    /// An answer's `Retry-After` holds its attempts back until then.
    pub cooling_until: Option<String>,
}

impl From<Handler> for HandlerRow {
    fn from(h: Handler) -> Self {
        let cooling_until =
            h.cooling_down_until(crate::db::now()).map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        Self {
            cooling_until,
            event_label: event_label(&h.events_id),
            id: h.id,
            priority: h.priority,
            name: h.name,
            events_id: h.events_id,
            handler_type: h.handler_type.as_str().to_owned(),
            target: h.target,
            ordering_group: h.ordering_group,
            status: h.status.as_str().to_owned(),
            health: HealthView::from(HandlerHealth::default()),
        }
    }
}

/// The handler list's health column: last outcome, 24 h success rate, backlog, sparkline.
pub struct HealthView {
    pub last_outcome: Option<String>,
    pub last_ok: bool,
    pub last_at: String,
    pub attempts_24h: i64,
    pub success_rate: Option<i64>,
    pub failing: i64,
    pub pending: i64,
    /// The counts as shown: "12", "10,000+".
    pub failing_text: String,
    pub pending_text: String,
    /// Since when the oldest of its backlog has been due (a paused handler's).
    pub waiting_since: Option<String>,
    /// Bars of the attempts-per-hour sparkline: (x, y, height) in a 72×16 box.
    pub bars: Vec<(usize, i64, i64)>,
    pub peak: i64,
}

impl From<HandlerHealth> for HealthView {
    fn from(h: HandlerHealth) -> Self {
        let peak = h.per_hour.iter().copied().max().unwrap_or(0);
        let bars = h
            .per_hour
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let height = (n * 16 / peak.max(1)).max(1);
                (i * 3, 16 - height, height)
            })
            .collect();
        Self {
            last_ok: h.last_outcome == Some(Outcome::Success),
            last_outcome: h.last_outcome.map(|o| o.as_str().to_owned()),
            last_at: h.last_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default(),
            attempts_24h: h.attempts_24h,
            success_rate: (h.attempts_24h > 0).then(|| (h.successes_24h * 100 + h.attempts_24h / 2) / h.attempts_24h),
            failing: h.failing,
            pending: h.pending,
            failing_text: count_text(h.failing),
            pending_text: count_text(h.pending),
            waiting_since: h.oldest_due.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            bars,
            peak,
        }
    }
}

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

/// A backlog count as the list shows it: exact up to the cap, "10,000+" above.
fn count_text(n: i64) -> String {
    let cap = crate::db::logs::BACKLOG_CAP;
    if n > cap { format!("{}+", super::views::grouped(cap)) } else { super::views::grouped(n) }
}

impl HandlerRow {
    /// What a click on the status icon does, for its tooltip and label.
    pub fn toggle_label(&self) -> &'static str {
        match self.status.as_str() {
            "enabled" => "Enabled — click to disable",
            "disabled" => "Disabled — click to enable",
            "paused" => "Paused — click to resume",
            _ => "Archived — click to restore as disabled",
        }
    }

    /// The status in words beside its dot: a colour alone says nothing to a
    /// screen reader or a colour-blind user.
    pub fn status_label(&self) -> &'static str {
        match self.status.as_str() {
            "enabled" => "Enabled",
            "disabled" => "Disabled",
            "paused" => "Paused",
            _ => "Archived",
        }
    }

    /// The target in pieces that may each end a line (after a `/`, `?` or
    /// `&`): a narrow screen wraps a URL between its parts, never inside
    /// `host:port`.
    pub fn target_parts(&self) -> Vec<&str> {
        self.target.split_inclusive(['/', '?', '&']).collect()
    }
}

#[derive(Template)]
#[template(path = "handlers/list.html")]
pub struct HandlerListPage {
    pub layout: Layout,
    pub rows: Vec<HandlerRow>,
    pub event: String,
    pub handler_type: String,
    pub status: String,
    pub filtered: bool,
    pub return_to: String,
    pub pager: Pager,
    pub groups: Vec<EventGroup>,
    /// The query as given: the text filter, and the sort links of the headers.
    pub query: ListQuery,
}

#[get("/provisioning")]
pub async fn list_handlers(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let filter = query.filter().map_err(AppError::BadRequest)?;
    let page = parse_page(&query.page).map_err(AppError::BadRequest)?;
    let (rows, total, mut health) = state
        .db
        .read(move |conn| {
            let (rows, total) = Handler::list(conn, &filter, Pager::offset(page), Pager::PER_PAGE)?;
            let ids: Vec<i64> = rows.iter().map(|h| h.id).collect();
            let health = HandlerHealth::of(conn, &ids)?;
            Ok((rows, total, health))
        })
        .await?;
    let filters = query.filters_query();
    let has_more = Pager::offset(page) + (rows.len() as i64) < total;
    let pager = Pager::new("/provisioning", &filters, page, Some(total), rows.len(), has_more);
    let mut return_to = String::from("/provisioning");
    if !filters.is_empty() || page > 1 {
        return_to = format!("/provisioning?{filters}{}page={page}", if filters.is_empty() { "" } else { "&" });
    }
    render(
        StatusCode::OK,
        &HandlerListPage {
            layout: Layout::new(&admin, "Provisioning", "handlers"),
            rows: rows
                .into_iter()
                .map(|h| {
                    let figures = health.remove(&h.id).unwrap_or_default();
                    HandlerRow { health: HealthView::from(figures), ..HandlerRow::from(h) }
                })
                .collect(),
            event: query.event.trim().to_owned(),
            handler_type: query.handler_type.trim().to_owned(),
            status: query.status.trim().to_owned(),
            filtered: !query.filter_pairs().is_empty(),
            return_to,
            pager,
            groups: event_groups(),
            query: query.into_inner(),
        },
    )
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

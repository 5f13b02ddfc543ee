//! `/provisioning/alerts`: the alerts raised (DESIGN §8.6), newest first, and
//! whether each reached `PROVISIOND_ALERT_URL`.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;

use super::{
    render,
    session::CurrentAdmin,
    views::{Layout, utc},
};
use crate::{db::alerts::Alert, domain::alert::AlertState, error::AppResult, service::AppState};

/// One row of the alerts page.
pub struct AlertRow {
    pub created_at: String,
    pub alert_type: &'static str,
    pub handler_id: i64,
    pub handler_name: String,
    pub message: String,
    /// Where its sending stands, in words.
    pub sending: String,
    pub failed: bool,
}

impl From<Alert> for AlertRow {
    fn from(a: Alert) -> Self {
        let error = a.last_error.clone().unwrap_or_default();
        let sending = match a.state {
            AlertState::Sent => format!("sent {}", a.sent_at.map(utc).unwrap_or_default()),
            AlertState::Unsent => "not sent: no PROVISIOND_ALERT_URL is set".into(),
            AlertState::Failed => format!("not taken after {} attempts: {error}", a.attempts),
            AlertState::Pending if a.attempts == 0 => "to be sent".into(),
            AlertState::Pending => format!(
                "retrying at {} after {} attempt{}: {error}",
                utc(a.next_attempt_at),
                a.attempts,
                if a.attempts == 1 { "" } else { "s" }
            ),
        };
        Self {
            created_at: utc(a.created_at),
            alert_type: a.alert_type.as_str(),
            handler_id: a.handler_id,
            handler_name: a.handler_name,
            message: a.message,
            failed: a.state == AlertState::Failed,
            sending,
        }
    }
}

#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    pub layout: Layout,
    pub rows: Vec<AlertRow>,
    pub url_set: bool,
}

#[get("/provisioning/alerts")]
pub async fn list_alerts(state: web::Data<AppState>, admin: CurrentAdmin) -> AppResult<HttpResponse> {
    let alerts = state.db.read(|conn| Alert::recent(conn, 200)).await?;
    render(
        StatusCode::OK,
        &AlertsPage {
            layout: Layout::new(&admin, "Alerts", "handlers"),
            rows: alerts.into_iter().map(AlertRow::from).collect(),
            url_set: state.settings.alert_url.is_some(),
        },
    )
}

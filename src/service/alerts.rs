//! Sending alerts (DESIGN §8.6): every process POSTs the pending alerts to
//! `PROVISIOND_ALERT_URL`, signed as deliveries are (Standard Webhooks, with
//! `PROVISIOND_ALERT_SECRET`), each retried on its own schedule. Apart from
//! the dispatcher: an alert endpoint that is down or slow holds up no delivery.

use std::time::Duration;

use chrono::TimeDelta;

use super::AppState;
use crate::{
    db::{alerts::Alert, now},
    diagnostics::cause_chain,
    dispatcher::http::USER_AGENT,
    domain::signing,
};

/// The delays between an alert's attempts: about a day in all.
pub const ALERT_RETRIES: [Duration; 7] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(12 * 3600),
];

/// How often the sender looks for alerts to send.
const POLL: Duration = Duration::from_secs(1);
/// The longest an alert's POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);

impl AppState {
    /// Sends the alerts as they are raised, for ever; nothing when no
    /// `PROVISIOND_ALERT_URL` is set (they are then listed in the UI only).
    pub async fn run_alerts(&self) {
        let (Some(url), Some(secret)) = (self.settings.alert_url.clone(), self.settings.alert_secret.clone()) else {
            return;
        };
        let client = match reqwest::Client::builder().timeout(TIMEOUT).user_agent(USER_AGENT).build() {
            Ok(client) => client,
            Err(e) => {
                tracing::error!(error = %cause_chain(&e), "cannot set up the alerts' HTTP client; no alert is sent");
                return;
            }
        };
        loop {
            // Leased for longer than a POST can take: after a crash, sent again.
            let lease_until = now() + TimeDelta::from_std(TIMEOUT * 3).unwrap_or(TimeDelta::MAX);
            // One at a time, each leased for longer than its POST can take.
            let due = match self.db.write(move |conn| Alert::take_due(conn, lease_until, 1)).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %cause_chain(&e), "cannot read the alerts to send");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::time::sleep(POLL).await;
                continue;
            }
            for alert in due {
                let result = post(&client, &url, &secret, &alert).await.map_err(|error| {
                    let retry = usize::try_from(alert.attempts - 1).ok().and_then(|n| ALERT_RETRIES.get(n));
                    let at = retry.and_then(|d| TimeDelta::from_std(*d).ok()).map(|d| now() + d);
                    tracing::warn!(alert = alert.id, kind = alert.alert_type.as_str(), %error, retry = at.is_some(), "an alert was not taken");
                    (error, at)
                });
                let id = alert.id;
                if let Err(e) = self.db.write(move |conn| Alert::record(conn, id, result)).await {
                    tracing::warn!(error = %cause_chain(&e), alert = id, "cannot record an alert's sending");
                }
            }
        }
    }
}

/// POSTs `alert`, signed; `Err` says why it was not taken (no 2xx answer).
async fn post(client: &reqwest::Client, url: &str, secret: &str, alert: &Alert) -> Result<(), String> {
    let id = format!("alert_{}", alert.id);
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signing::sign(secret, &id, timestamp, alert.payload.as_bytes());
    let res = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(alert.payload.clone())
        .send()
        .await
        .map_err(|e| cause_chain(&e))?;
    if res.status().is_success() { Ok(()) } else { Err(format!("answered {}", res.status())) }
}

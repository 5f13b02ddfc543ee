//! Operational alerts (DESIGN §8.6): what happened to a handler that an
//! operator should hear of, raised once per handler and type within a window.

use serde::Serialize;

/// What an alert says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AlertType {
    /// Its attempts have failed so many times in a row.
    Failing,
    /// It succeeded again after `Failing`.
    Recovered,
    /// It was disabled by the server: failing for too long, or its endpoint is gone.
    Disabled,
    /// A delivery of it failed its last attempt.
    Exhausted,
}

text_enum!(AlertType "alert type" {
    Failing => "handler.failing",
    Recovered => "handler.recovered",
    Disabled => "handler.disabled",
    Exhausted => "delivery.exhausted",
});

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum AlertState {
    /// To be POSTed (again) at its next attempt's time.
    Pending,
    Sent,
    /// Its attempts ran out.
    Failed,
    /// No `PROVISIOND_ALERT_URL` is set: listed in the UI only.
    Unsent,
}

text_enum!(AlertState "alert state" {
    Pending => "pending",
    Sent => "sent",
    Failed => "failed",
    Unsent => "unsent",
});

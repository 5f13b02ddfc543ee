//! Creating, editing, enabling/disabling, deleting a handler and rotating its
//! secret (DESIGN §3.2, §4.1, §4.8).

use super::{AppState, Missing, Refusal};
use crate::{
    db::handlers::{Handler, HandlerChangeset, NewHandler},
    domain::{HandlerForm, HandlerStatus, signing::generate_secret},
};

impl AppState {
    /// A new handler from its form, with a new signing secret. It applies to
    /// the next event: ingestion reads the handlers in its own statement.
    pub async fn create_handler(&self, form: &HandlerForm) -> Result<Handler, Refusal> {
        let valid = form.validate(&self.settings.scripts_dir).map_err(Refusal::Invalid)?;
        let new = NewHandler::new(valid, generate_secret());
        let handler = self.db.write(move |conn| Handler::create(conn, &new)).await?;
        tracing::info!(handler = handler.id, name = %handler.name, "handler created");
        Ok(handler)
    }

    /// Replaces handler `id` with the form's values; leaving `enabled`
    /// cancels its pending deliveries (rule 8).
    pub async fn update_handler(&self, id: i64, form: &HandlerForm) -> Result<Handler, Refusal> {
        let valid = form.validate(&self.settings.scripts_dir).map_err(Refusal::Invalid)?;
        let changes = HandlerChangeset::from(valid);
        let handler = self
            .db
            .write(move |conn| Handler::update(conn, id, &changes))
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, "handler updated");
        // A new priority or status may let a delivery waiting on it go.
        self.dispatcher.wake();
        Ok(handler)
    }

    /// Sets the status of handler `id`, or without one toggles it
    /// ([`HandlerStatus::toggled`]); leaving `enabled` cancels its pending
    /// deliveries (rule 8).
    pub async fn set_handler_status(&self, id: i64, status: Option<HandlerStatus>) -> Result<Handler, Refusal> {
        let handler = self
            .db
            .write(move |conn| {
                let wanted = match status {
                    Some(status) => status,
                    None => Handler::find(conn, id)?.status.toggled(),
                };
                Handler::set_status(conn, id, wanted)
            })
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, status = %handler.status, "handler status changed");
        // Cancelled deliveries let the rest of their chains go.
        self.dispatcher.wake();
        Ok(handler)
    }

    /// Deletes handler `id` with its deliveries and logs.
    pub async fn delete_handler(&self, id: i64) -> Result<Handler, Refusal> {
        let handler = self
            .db
            .write(move |conn| Handler::delete(conn, id))
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, name = %handler.name, "handler deleted");
        // The rest of its events' chains need not wait for it any more.
        self.dispatcher.wake();
        Ok(handler)
    }

    /// A new signing secret for handler `id`; the old one stops signing at once.
    pub async fn rotate_handler_secret(&self, id: i64) -> Result<Handler, Refusal> {
        let secret = generate_secret();
        let handler = self
            .db
            .write(move |conn| Handler::set_secret(conn, id, &secret))
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, "handler secret rotated");
        Ok(handler)
    }
}

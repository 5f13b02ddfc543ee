//! Creating, editing, enabling/disabling, deleting a handler and rotating its
//! secret (DESIGN §3.2, §4.1, §4.8), each with its audit entry.

use super::{
    AppState, Missing, Refusal,
    access::{Action, Actor},
    audit::{self, handler_changes, handler_target},
};
use crate::{
    db::handlers::{Handler, HandlerChangeset, NewHandler},
    domain::{
        HandlerForm, HandlerStatus,
        signing::{self, Scheme},
    },
};

impl AppState {
    /// A new handler from its form, with a new signing secret. It applies to
    /// the next event: ingestion reads the handlers in its own statement.
    pub async fn create_handler(&self, actor: &Actor, form: &HandlerForm) -> Result<Handler, Refusal> {
        actor.must(Action::EditHandlers)?;
        let valid = form.validate(&self.settings.scripts_dir, &self.settings.deny_targets).map_err(Refusal::Invalid)?;
        let secret = signing::generate(valid.signature.unwrap_or_default());
        let new = NewHandler::new(valid, secret);
        let actor = actor.clone();
        let handler = self
            .db
            .write(move |conn| {
                let handler = Handler::create(conn, &new)?;
                let changes = handler_changes(None, Some(&handler));
                audit::record(conn, &actor, "handler.create", &handler_target(&handler), changes)?;
                Ok(handler)
            })
            .await?;
        tracing::info!(handler = handler.id, name = ?handler.name, "handler created");
        Ok(handler)
    }

    /// Replaces handler `id` with the form's values; leaving `enabled`
    /// cancels its pending deliveries (rule 8).
    pub async fn update_handler(&self, actor: &Actor, id: i64, form: &HandlerForm) -> Result<Handler, Refusal> {
        actor.must(Action::EditHandlers)?;
        let valid = form.validate(&self.settings.scripts_dir, &self.settings.deny_targets).map_err(Refusal::Invalid)?;
        let scheme = valid.signature;
        let changes = HandlerChangeset::from(valid);
        let old_signs_until = self.old_secret_signs_until();
        let actor = actor.clone();
        let handler = self
            .db
            .write(move |conn| {
                let old = Handler::find(conn, id)?;
                let mut handler = Handler::update(conn, id, &changes)?;
                // Another signature: a new secret of its kind, the old one
                // signing beside it for the overlap, as at a rotation.
                if let Some(scheme) = scheme.filter(|s| *s != Scheme::of(&old.secret)) {
                    handler = Handler::set_secret(conn, id, &signing::generate(scheme), old_signs_until)?;
                }
                audit_change(conn, &actor, "handler.update", &old, &handler)?;
                Ok(handler)
            })
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
    pub async fn set_handler_status(
        &self,
        actor: &Actor,
        id: i64,
        status: Option<HandlerStatus>,
    ) -> Result<Handler, Refusal> {
        actor.must(Action::ChangeStatus)?;
        let actor = actor.clone();
        let handler = self
            .db
            .write(move |conn| {
                let old = Handler::find(conn, id)?;
                let handler = Handler::set_status(conn, id, status.unwrap_or_else(|| old.status.toggled()))?;
                audit_change(conn, &actor, "handler.status", &old, &handler)?;
                Ok(handler)
            })
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, status = %handler.status, "handler status changed");
        // Cancelled deliveries let the rest of their chains go.
        self.dispatcher.wake();
        Ok(handler)
    }

    /// Deletes handler `id` with its deliveries and logs.
    pub async fn delete_handler(&self, actor: &Actor, id: i64) -> Result<Handler, Refusal> {
        actor.must(Action::EditHandlers)?;
        let actor = actor.clone();
        let handler = self
            .db
            .write(move |conn| {
                let handler = Handler::delete(conn, id)?;
                let changes = handler_changes(Some(&handler), None);
                audit::record(conn, &actor, "handler.delete", &handler_target(&handler), changes)?;
                Ok(handler)
            })
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, name = ?handler.name, "handler deleted");
        // The rest of its events' chains need not wait for it any more.
        self.dispatcher.wake();
        Ok(handler)
    }

    /// A new signing secret for handler `id`; the old one goes on signing
    /// beside it for `PROVISIOND_SECRET_OVERLAP`.
    pub async fn rotate_handler_secret(&self, actor: &Actor, id: i64) -> Result<Handler, Refusal> {
        actor.must(Action::RotateSecrets)?;
        let old_signs_until = self.old_secret_signs_until();
        let actor = actor.clone();
        let handler = self
            .db
            .write(move |conn| {
                let old = Handler::find(conn, id)?;
                // A new secret of the same kind: a key stays a key.
                let secret = signing::generate(Scheme::of(&old.secret));
                let handler = Handler::set_secret(conn, id, &secret, old_signs_until)?;
                audit_change(conn, &actor, "handler.secret.rotate", &old, &handler)?;
                Ok(handler)
            })
            .await
            .map_err(Refusal::or_missing(Missing::Handler(id)))?;
        tracing::info!(handler = handler.id, "handler secret rotated");
        Ok(handler)
    }
}

impl AppState {
    /// Until when a replaced secret goes on signing (`PROVISIOND_SECRET_OVERLAP`), if at all.
    fn old_secret_signs_until(&self) -> Option<chrono::NaiveDateTime> {
        let overlap = chrono::TimeDelta::from_std(self.settings.secret_overlap).unwrap_or(chrono::TimeDelta::hours(24));
        (overlap > chrono::TimeDelta::zero()).then(|| crate::db::now() + overlap)
    }
}

/// Records a change of a handler, unless nothing changed.
fn audit_change(
    conn: &mut crate::db::Write<'_>,
    actor: &Actor,
    action: &str,
    old: &Handler,
    new: &Handler,
) -> crate::db::QueryResult<()> {
    let changes = handler_changes(Some(old), Some(new));
    if changes.as_object().is_some_and(|c| c.is_empty()) {
        return Ok(());
    }
    audit::record(conn, actor, action, &handler_target(new), changes)
}

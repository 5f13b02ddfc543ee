//! Retrying a finished delivery by hand (DESIGN §4.7), audited.

use serde_json::json;

use super::{
    AppState, Missing, Refusal,
    access::{Action, Actor},
    audit,
};
use crate::db::deliveries::Delivery;

impl AppState {
    /// Queues finished delivery `id` for one more attempt, at once and
    /// outside the priority chain.
    pub async fn retry_delivery(&self, actor: &Actor, id: i64) -> Result<Delivery, Refusal> {
        actor.must(Action::Retry)?;
        let actor = actor.clone();
        let retried = self
            .db
            .write(move |conn| {
                let Some(delivery) = Delivery::retry(conn, id)? else { return Ok(None) };
                let changes = json!({
                    "handler_id": delivery.handler_id,
                    "event_id": delivery.event_id,
                    "object": format!("{} {}", delivery.entity, delivery.object_id),
                });
                audit::record(conn, &actor, "delivery.retry", &format!("delivery {id}"), changes)?;
                Ok(Some(delivery))
            })
            .await
            .map_err(Refusal::or_missing(Missing::Delivery(id)))?;
        let delivery = retried.ok_or(Refusal::NotFinished(id))?;
        tracing::info!(delivery = id, "delivery queued again by hand");
        self.dispatcher.wake();
        Ok(delivery)
    }
}

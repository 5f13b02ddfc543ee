//! Retrying a finished delivery by hand (DESIGN §4.7).

use super::{AppState, Missing, Refusal};
use crate::db::deliveries::Delivery;

impl AppState {
    /// Queues finished delivery `id` for one more attempt, at once and
    /// outside the priority chain.
    pub async fn retry_delivery(&self, id: i64) -> Result<Delivery, Refusal> {
        let retried = self
            .db
            .write(move |conn| Delivery::retry(conn, id))
            .await
            .map_err(Refusal::or_missing(Missing::Delivery(id)))?;
        let delivery = retried.ok_or(Refusal::NotFinished(id))?;
        tracing::info!(delivery = id, "delivery queued again by hand");
        self.dispatcher.wake();
        Ok(delivery)
    }
}

//! Ingesting an event (DESIGN §3.3, §4.2): acknowledged once it and its
//! deliveries are committed.

use std::sync::atomic::Ordering::Relaxed;

use chrono::{SecondsFormat, Utc};

use super::{Action, Actor, AppState, Refusal};
use crate::{
    db::events::{Answer, IdempotencyKey, Ingested},
    domain::envelope::parse_envelope,
    security::sha256_hex,
};

/// A posted event as the API received it.
pub struct IngestRequest<'a> {
    pub body: &'a [u8],
    /// The `Idempotency-Key` header, already checked for its form.
    pub idempotency_key: Option<String>,
}

impl AppState {
    /// Stores the event with a delivery for every handler enabled for it and
    /// wakes the dispatcher (the group-commit writer does, once per batch).
    /// A repeated post with the same key and body answers the first event.
    pub async fn ingest(&self, actor: &Actor, request: IngestRequest<'_>) -> Result<Ingested, Refusal> {
        actor.must(Action::Ingest)?;
        if self.stopping() {
            return Err(Refusal::ShuttingDown);
        }
        let key = request.idempotency_key.map(|key| IdempotencyKey { key, body_sha256: sha256_hex(request.body) });
        let event = parse_envelope(request.body, || Utc::now().to_rfc3339_opts(SecondsFormat::Micros, false))
            .map_err(Refusal::Envelope)?;
        let ingested = self.ingestor.ingest(event, key).await?;
        match ingested.answer {
            Answer::KeyReused => Err(Refusal::KeyReused(ingested.id)),
            Answer::Replayed => Ok(ingested),
            Answer::Stored => {
                let metrics = self.dispatcher.metrics();
                metrics.events_ingested.fetch_add(1, Relaxed);
                metrics.deliveries_created.fetch_add(ingested.deliveries as u64, Relaxed);
                Ok(ingested)
            }
        }
    }
}

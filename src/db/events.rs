//! The `events` table and ingestion: an event and its deliveries in one transaction.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error},
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{
    DbConnection, Read, Write,
    deliveries::PARKED,
    now,
    prepared::{cached, id_list},
    schema::{deliveries, events, idempotency_keys},
};
use crate::domain::envelope::ValidEvent;

/// How long an `Idempotency-Key` returns its first answer.
pub const IDEMPOTENCY_TTL: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, Clone, Queryable, Identifiable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    pub payload: String,
    pub received_at: NaiveDateTime,
}

/// The answer to an ingestion: the event's id and how many deliveries it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    pub id: i64,
    pub deliveries: i64,
    pub answer: Answer,
}

/// What an ingestion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Stored a new event.
    Stored,
    /// Stored nothing: an earlier post with the same `Idempotency-Key` and
    /// the same body answered (its event is the one named).
    Replayed,
    /// Stored nothing: the `Idempotency-Key` was used for another body (the
    /// event named) within [`IDEMPOTENCY_TTL`].
    KeyReused,
}

/// A producer's `Idempotency-Key` and the SHA-256 of the body it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub body_sha256: String,
}

// Ingestion's SQL, each backend's text written out in full (also in
// `tests/sql/ingest*.sql`). Both create one pending delivery for every
// handler enabled for the event, in the same statement that reads the
// handlers — so this is the chain the claim's rule 3 sees — with:
// - when it is due: at once for the first handler of the event's chain, else
//   parked ([`crate::db::deliveries::PARKED`]) until the first attempt of the
//   one before it has ended;
// - its ordering group for good (DESIGN §4.4): the handler's
//   `ordering_group`, else its target.
// On PostgreSQL the handlers read are locked against their deletion (the
// lock the deliveries' foreign key takes anyway, taken as they are read): a
// handler deleted meanwhile is waited for and then left out, where reading
// it unlocked would fail the statement on the foreign key.

/// SQLite: the deliveries of the events `$5` (a JSON array of ids), received
/// at `$4`, the events being written just before in the same transaction.
const CREATE_DELIVERIES_SQLITE: &str = "
/* $1 the webhook-id prefix, $2 max attempts, $3 PARKED, $4 received at, $5 the events, a JSON array */
INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                        max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
SELECT e.id, h.id, $1 || e.id || '_' || h.id, h.priority, e.entity, e.object_id, 'pending', 0,
       COALESCE(h.max_attempts, $2), h.status = 'paused',
       CASE WHEN h.status = 'enabled' AND EXISTS (
         SELECT 1 FROM handlers b
         WHERE b.events_id = h.events_id AND b.status = 'enabled'
           AND (b.priority < h.priority OR (b.priority = h.priority AND b.id < h.id)))
       THEN $3 ELSE $4 END,
       $4, $4, COALESCE(h.ordering_group, h.target)
FROM events e JOIN handlers h ON h.events_id = e.events_id AND h.status IN ('enabled', 'paused')
WHERE e.id IN (SELECT value FROM json_each($5))
RETURNING event_id";

/// PostgreSQL: the events `$2` (a JSON array, in order) and their deliveries
/// in one statement; answers each event's id and number of deliveries, in the
/// order given (ids are drawn in that order).
const INGEST_POSTGRES: &str = "
/* $1 received at, $2 the events, a JSON array, $3 the webhook-id prefix, $4 max attempts, $5 PARKED */
WITH new_events AS (
  INSERT INTO events (events_id, entity, object_id, payload, received_at)
  SELECT x.e ->> 'events_id', x.e ->> 'entity', x.e ->> 'object_id', x.e ->> 'payload', $1
  FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x(e, n)
  ORDER BY x.n
  RETURNING id, events_id, entity, object_id
), new_deliveries AS (
  INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                          max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
  SELECT e.id, h.id, $3 || e.id || '_' || h.id, h.priority, e.entity, e.object_id, 'pending', 0,
         COALESCE(h.max_attempts, $4), h.status = 'paused',
         CASE WHEN h.status = 'enabled' AND EXISTS (
           SELECT 1 FROM handlers b
           WHERE b.events_id = h.events_id AND b.status = 'enabled'
             AND (b.priority < h.priority OR (b.priority = h.priority AND b.id < h.id)))
         THEN $5 ELSE $1 END,
         $1, $1, COALESCE(h.ordering_group, h.target)
  FROM new_events e JOIN handlers h ON h.events_id = e.events_id AND h.status IN ('enabled', 'paused')
  FOR KEY SHARE OF h
  RETURNING event_id
)
SELECT e.id, COUNT(d.event_id) AS deliveries
FROM new_events e LEFT JOIN new_deliveries d ON d.event_id = e.id
GROUP BY e.id
ORDER BY e.id";

#[derive(QueryableByName)]
struct IngestedRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    deliveries: i64,
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct EventIdRow {
    #[diesel(sql_type = BigInt)]
    event_id: i64,
}

impl Event {
    pub fn find(conn: &mut Read<'_>, id: i64) -> QueryResult<Event> {
        events::table.find(id).first(conn.db())
    }

    /// The events about one object (newest `limit`), oldest first.
    pub fn for_object(conn: &mut Read<'_>, entity: &str, object_id: &str, limit: i64) -> QueryResult<Vec<Event>> {
        let mut rows: Vec<Event> = events::table
            .filter(events::object_id.eq(object_id))
            .filter(events::entity.eq(entity))
            .order(events::id.desc())
            .limit(limit)
            .load(conn.db())?;
        rows.reverse();
        Ok(rows)
    }

    /// Stores the event and one pending delivery for every handler enabled for
    /// it now, atomically. With an idempotency key seen in the last 24 h, it
    /// stores nothing and returns the first answer.
    pub fn ingest(
        conn: &mut Write<'_>,
        event: &ValidEvent,
        idempotency_key: Option<&IdempotencyKey>,
        max_attempts: i32,
    ) -> QueryResult<Ingested> {
        let result = conn.savepoint(|conn| {
            if let Some(key) = idempotency_key
                && let Some(first) = Self::replay(conn, key)?
            {
                return Ok(first);
            }
            // The same insert as a batch of one (a savepoint inside this transaction).
            let stored = Self::ingest_batch(conn, std::slice::from_ref(event), max_attempts)?;
            let Some(&ingested) = stored.first() else { return Err(Error::NotFound) };
            let (id, at) = (ingested.id, now());
            if let Some(key) = idempotency_key {
                diesel::insert_into(idempotency_keys::table)
                    .values((
                        idempotency_keys::key.eq(&key.key),
                        idempotency_keys::event_id.eq(id),
                        idempotency_keys::created_at.eq(at),
                        idempotency_keys::body_sha256.eq(&key.body_sha256),
                    ))
                    .execute(conn.db())?;
            }
            Ok(ingested)
        });
        match (result, idempotency_key) {
            // Two posts with one key at once: the loser answers like a replay.
            (Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)), Some(key)) => {
                Self::replay(conn, key)?.ok_or(Error::NotFound)
            }
            (result, _) => result,
        }
    }

    /// Stores many events (none with an idempotency key) and their deliveries
    /// in one transaction: a group commit. Returns one answer per event, in
    /// order. One statement on PostgreSQL (for [`crate::db::Db::ingest_one`]).
    pub fn ingest_batch(conn: &mut Write<'_>, batch: &[ValidEvent], max_attempts: i32) -> QueryResult<Vec<Ingested>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (at, webhook_prefix) = (now(), format!("msg_{}_", uuid::Uuid::new_v4().simple()));
        match conn.db() {
            // One statement, atomic on its own: one round trip for the batch.
            DbConnection::Postgres(_) => {
                let events: Vec<serde_json::Value> = batch
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "events_id": e.event_type.id,
                            "entity": e.event_type.entity(),
                            "object_id": e.object_id,
                            "payload": e.payload,
                        })
                    })
                    .collect();
                let rows: Vec<IngestedRow> = cached(INGEST_POSTGRES)
                    .bind::<Timestamp, _>(at)
                    .bind::<Text, _>(serde_json::Value::Array(events).to_string())
                    .bind::<Text, _>(&webhook_prefix)
                    .bind::<Integer, _>(max_attempts)
                    .bind::<Timestamp, _>(PARKED)
                    .load(conn.db())?;
                if rows.len() != batch.len() {
                    return Err(Error::NotFound);
                }
                Ok(rows
                    .into_iter()
                    .map(|r| Ingested { id: r.id, deliveries: r.deliveries, answer: Answer::Stored })
                    .collect())
            }
            // No round trips to save on SQLite: one prepared insert per event,
            // then the deliveries of all of them.
            DbConnection::Sqlite(_) => {
                let ids: Vec<i64> = batch
                    .iter()
                    .map(|e| {
                        cached(
                            "INSERT INTO events (events_id, entity, object_id, payload, received_at)
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        )
                        .bind::<Text, _>(e.event_type.id)
                        .bind::<Text, _>(e.event_type.entity())
                        .bind::<Text, _>(&e.object_id)
                        .bind::<Text, _>(&e.payload)
                        .bind::<Timestamp, _>(at)
                        .get_result::<IdRow>(conn.db())
                        .map(|r| r.id)
                    })
                    .collect::<QueryResult<_>>()?;
                let created: Vec<EventIdRow> = cached(CREATE_DELIVERIES_SQLITE)
                    .bind::<Text, _>(&webhook_prefix)
                    .bind::<Integer, _>(max_attempts)
                    .bind::<Timestamp, _>(PARKED)
                    .bind::<Timestamp, _>(at)
                    .bind::<Text, _>(id_list(&ids))
                    .load(conn.db())?;
                let mut counts: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
                for row in created {
                    *counts.entry(row.event_id).or_default() += 1;
                }
                Ok(ids
                    .into_iter()
                    .map(|id| Ingested {
                        id,
                        deliveries: counts.get(&id).copied().unwrap_or(0),
                        answer: Answer::Stored,
                    })
                    .collect())
            }
        }
    }

    /// The first answer given for an idempotency key, if still fresh (or
    /// that it was given for another body); an expired key is removed so it
    /// can be used again.
    fn replay(conn: &mut Write<'_>, key: &IdempotencyKey) -> QueryResult<Option<Ingested>> {
        let found: Option<(i64, NaiveDateTime, Option<String>)> = idempotency_keys::table
            .find(&key.key)
            .select((idempotency_keys::event_id, idempotency_keys::created_at, idempotency_keys::body_sha256))
            .first(conn.db())
            .optional()?;
        match found {
            Some((id, created, body)) if created > now() - IDEMPOTENCY_TTL => {
                let count = deliveries::table.filter(deliveries::event_id.eq(id)).count().get_result(conn.db())?;
                let same = body.is_none_or(|body| body == key.body_sha256);
                let answer = if same { Answer::Replayed } else { Answer::KeyReused };
                Ok(Some(Ingested { id, deliveries: count, answer }))
            }
            Some(_) => {
                diesel::delete(idempotency_keys::table.find(&key.key)).execute(conn.db())?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Removes at most `batch` events received before `before` that are
    /// left with no delivery (retention; an event with an unfinished
    /// delivery stays with it).
    pub fn prune_undelivered(conn: &mut Write<'_>, before: NaiveDateTime, batch: i64) -> QueryResult<usize> {
        diesel::sql_query(
            "DELETE FROM events WHERE id IN
               (SELECT e.id FROM events e
                WHERE e.received_at < $1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                ORDER BY e.received_at LIMIT $2)",
        )
        .bind::<Timestamp, _>(before)
        .bind::<BigInt, _>(batch)
        .execute(conn.db())
    }

    /// Removes idempotency keys older than 24 h.
    pub fn prune_idempotency_keys(conn: &mut Write<'_>) -> QueryResult<usize> {
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.le(now() - IDEMPOTENCY_TTL)))
            .execute(conn.db())
    }
}

/// Ingestion's statements as they run, for the golden files (`db::golden`).
#[cfg(test)]
pub(super) fn statements() -> Vec<(&'static str, super::Backend, String)> {
    use super::Backend::{Postgres, Sqlite};
    vec![("ingest", Postgres, INGEST_POSTGRES.into()), ("ingest_deliveries", Sqlite, CREATE_DELIVERIES_SQLITE.into())]
}

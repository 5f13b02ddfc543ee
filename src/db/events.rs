//! The `events` table and ingestion: an event and its deliveries in one transaction.

use chrono::{NaiveDateTime, TimeDelta};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error},
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{
    DbConnection, now,
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
    /// True when an earlier post with the same `Idempotency-Key` answered.
    pub replayed: bool,
}

/// One delivery per handler enabled for the event, in chain order data.
const CREATE_DELIVERIES: &str = "\
INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                        max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at)
SELECT $1, h.id, $2 || h.id, h.priority, $3, $4, 'pending', 0, $5, FALSE, $6, $6, $6
FROM handlers h
WHERE h.events_id = $7 AND h.status = 'enabled'";

impl Event {
    pub fn find(conn: &mut DbConnection, id: i64) -> QueryResult<Event> {
        events::table.find(id).first(conn)
    }

    /// The events about one object (newest `limit`), oldest first.
    pub fn for_object(conn: &mut DbConnection, entity: &str, object_id: &str, limit: i64) -> QueryResult<Vec<Event>> {
        let mut rows: Vec<Event> = events::table
            .filter(events::object_id.eq(object_id))
            .filter(events::entity.eq(entity))
            .order(events::id.desc())
            .limit(limit)
            .load(conn)?;
        rows.reverse();
        Ok(rows)
    }

    /// Stores the event and one pending delivery for every handler enabled for
    /// it now, atomically. With an idempotency key seen in the last 24 h, it
    /// stores nothing and returns the first answer.
    pub fn ingest(
        conn: &mut DbConnection,
        event: &ValidEvent,
        idempotency_key: Option<&str>,
        max_attempts: i32,
    ) -> QueryResult<Ingested> {
        let result = crate::db::write_transaction(conn, |conn| {
            if let Some(key) = idempotency_key
                && let Some(first) = Self::replay(conn, key)?
            {
                return Ok(first);
            }
            let at = now();
            let entity = event.event_type.entity();
            let id: i64 = diesel::insert_into(events::table)
                .values((
                    events::events_id.eq(event.event_type.id),
                    events::entity.eq(entity),
                    events::object_id.eq(&event.object_id),
                    events::payload.eq(&event.payload),
                    events::received_at.eq(at),
                ))
                .returning(events::id)
                .get_result(conn)?;
            let webhook_prefix = format!("msg_{}_", uuid::Uuid::new_v4().simple());
            let created = diesel::sql_query(CREATE_DELIVERIES)
                .bind::<BigInt, _>(id)
                .bind::<Text, _>(&webhook_prefix)
                .bind::<Text, _>(entity)
                .bind::<Text, _>(&event.object_id)
                .bind::<Integer, _>(max_attempts)
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(event.event_type.id)
                .execute(conn)?;
            if let Some(key) = idempotency_key {
                diesel::insert_into(idempotency_keys::table)
                    .values((
                        idempotency_keys::key.eq(key),
                        idempotency_keys::event_id.eq(id),
                        idempotency_keys::created_at.eq(at),
                    ))
                    .execute(conn)?;
            }
            Ok(Ingested { id, deliveries: created as i64, replayed: false })
        });
        match (result, idempotency_key) {
            // Two posts with one key at once: the loser answers like a replay.
            (Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)), Some(key)) => {
                Self::replay(conn, key)?.ok_or(Error::NotFound)
            }
            (result, _) => result,
        }
    }

    /// The first answer given for an idempotency key, if still fresh; an
    /// expired key is removed so it can be used again.
    fn replay(conn: &mut DbConnection, key: &str) -> QueryResult<Option<Ingested>> {
        let found: Option<(i64, NaiveDateTime)> = idempotency_keys::table
            .find(key)
            .select((idempotency_keys::event_id, idempotency_keys::created_at))
            .first(conn)
            .optional()?;
        match found {
            Some((id, created)) if created > now() - IDEMPOTENCY_TTL => {
                let count = deliveries::table.filter(deliveries::event_id.eq(id)).count().get_result(conn)?;
                Ok(Some(Ingested { id, deliveries: count, replayed: true }))
            }
            Some(_) => {
                diesel::delete(idempotency_keys::table.find(key)).execute(conn)?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Removes idempotency keys older than 24 h.
    pub fn prune_idempotency_keys(conn: &mut DbConnection) -> QueryResult<usize> {
        diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.le(now() - IDEMPOTENCY_TTL)))
            .execute(conn)
    }
}

//! The `events` table and ingestion: an event and its deliveries in one transaction.

use std::sync::LazyLock;

use chrono::{NaiveDateTime, TimeDelta};
use diesel::{
    prelude::*,
    result::{DatabaseErrorKind, Error},
    sql_types::{BigInt, Integer, Text, Timestamp},
};

use super::{
    DbConnection, now,
    prepared::{Sql, cached, id_list},
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

#[derive(Insertable)]
#[diesel(table_name = events)]
struct NewEvent<'a> {
    events_id: &'a str,
    entity: &'a str,
    object_id: &'a str,
    payload: &'a str,
    received_at: NaiveDateTime,
}

/// One pending delivery for every handler enabled for the events `$4` (a JSON array of ids).
static CREATE_DELIVERIES: LazyLock<Sql> = LazyLock::new(|| {
    Sql::new(
        "INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                                 max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at)
         SELECT e.id, h.id, $1 || e.id || '_' || h.id, h.priority, e.entity, e.object_id, 'pending', 0, $2, FALSE,
                $3, $3, $3
         FROM events e JOIN handlers h ON h.events_id = e.events_id AND h.status = 'enabled'
         WHERE e.id IN JSON($4)
         RETURNING event_id",
    )
});

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
            // The same insert as a batch of one (a savepoint inside this transaction).
            let stored = Self::ingest_batch(conn, std::slice::from_ref(event), max_attempts)?;
            let Some(&ingested) = stored.first() else { return Err(Error::NotFound) };
            let (id, at) = (ingested.id, now());
            if let Some(key) = idempotency_key {
                diesel::insert_into(idempotency_keys::table)
                    .values((
                        idempotency_keys::key.eq(key),
                        idempotency_keys::event_id.eq(id),
                        idempotency_keys::created_at.eq(at),
                    ))
                    .execute(conn)?;
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
    /// in one transaction: a group commit. Returns one answer per event, in order.
    pub fn ingest_batch(
        conn: &mut DbConnection,
        batch: &[ValidEvent],
        max_attempts: i32,
    ) -> QueryResult<Vec<Ingested>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let at = now();
        let rows: Vec<NewEvent<'_>> = batch
            .iter()
            .map(|e| NewEvent {
                events_id: e.event_type.id,
                entity: e.event_type.entity(),
                object_id: &e.object_id,
                payload: &e.payload,
                received_at: at,
            })
            .collect();
        crate::db::write_transaction(conn, |conn| {
            let ids: Vec<i64> = match conn {
                // One statement for the whole batch; PostgreSQL returns the ids in VALUES order.
                DbConnection::Postgres(pg) => {
                    diesel::insert_into(events::table).values(&rows).returning(events::id).get_results(pg)?
                }
                // No round trips to save on SQLite: one prepared insert per event.
                DbConnection::Sqlite(_) => rows
                    .iter()
                    .map(|row| {
                        cached(
                            "INSERT INTO events (events_id, entity, object_id, payload, received_at)
                             VALUES ($1, $2, $3, $4, $5) RETURNING id",
                        )
                        .bind::<Text, _>(row.events_id)
                        .bind::<Text, _>(row.entity)
                        .bind::<Text, _>(row.object_id)
                        .bind::<Text, _>(row.payload)
                        .bind::<Timestamp, _>(row.received_at)
                        .get_result::<IdRow>(conn)
                        .map(|r| r.id)
                    })
                    .collect::<QueryResult<_>>()?,
            };
            let webhook_prefix = format!("msg_{}_", uuid::Uuid::new_v4().simple());
            let created: Vec<EventIdRow> = CREATE_DELIVERIES
                .on(conn)
                .bind::<Text, _>(&webhook_prefix)
                .bind::<Integer, _>(max_attempts)
                .bind::<Timestamp, _>(at)
                .bind::<Text, _>(id_list(&ids))
                .load(conn)?;
            let mut counts: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
            for row in created {
                *counts.entry(row.event_id).or_default() += 1;
            }
            Ok(ids
                .into_iter()
                .map(|id| Ingested { id, deliveries: counts.get(&id).copied().unwrap_or(0), replayed: false })
                .collect())
        })
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

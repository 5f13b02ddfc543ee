//! The `execution_logs` table: one row per delivery attempt.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::{DbConnection, schema::execution_logs};

#[derive(Debug, Clone, Queryable, Identifiable, Serialize)]
#[diesel(table_name = execution_logs)]
pub struct ExecutionLog {
    pub id: i64,
    pub delivery_id: i64,
    pub handler_id: i64,
    pub event_id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    pub attempt: i32,
    pub started_at: NaiveDateTime,
    pub duration_ms: i64,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub request_body: String,
    pub request_headers: String,
    pub response_body: String,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

/// One attempt to record.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = execution_logs)]
pub struct NewExecutionLog {
    pub delivery_id: i64,
    pub handler_id: i64,
    pub event_id: i64,
    pub events_id: String,
    pub entity: String,
    pub object_id: String,
    pub attempt: i32,
    pub started_at: NaiveDateTime,
    pub duration_ms: i64,
    pub outcome: String,
    pub status_code: Option<i32>,
    pub request_body: String,
    pub request_headers: String,
    pub response_body: String,
    pub error: Option<String>,
    pub next_attempt_at: Option<NaiveDateTime>,
}

impl NewExecutionLog {
    pub fn insert(&self, conn: &mut DbConnection) -> QueryResult<()> {
        diesel::insert_into(execution_logs::table).values(self).execute(conn).map(drop)
    }
}

/// Filters of the Execution Logs tab; every part optional.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub handler_id: Option<i64>,
    pub events_id: Option<String>,
    pub outcome: Option<String>,
    pub delivery_id: Option<i64>,
}

impl ExecutionLog {
    /// One page, newest first, and whether there is a further page.
    pub fn list(
        conn: &mut DbConnection,
        filter: &LogFilter,
        offset: i64,
        limit: i64,
    ) -> QueryResult<(Vec<Self>, bool)> {
        let mut q = execution_logs::table.into_boxed();
        if let Some(h) = filter.handler_id {
            q = q.filter(execution_logs::handler_id.eq(h));
        }
        if let Some(e) = &filter.events_id {
            q = q.filter(execution_logs::events_id.eq(e.clone()));
        }
        if let Some(d) = filter.delivery_id {
            q = q.filter(execution_logs::delivery_id.eq(d));
        }
        if let Some(o) = &filter.outcome {
            q = q.filter(execution_logs::outcome.eq(o.clone()));
        }
        let mut rows: Vec<Self> = q.order(execution_logs::id.desc()).offset(offset).limit(limit + 1).load(conn)?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }
}

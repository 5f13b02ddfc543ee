//! The `alerts` table (DESIGN §8.6): alerts raised in the transaction of what
//! caused them, then POSTed by [`crate::service::alerts`] with their own
//! retries, apart from every delivery.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{DbConnection, Read, Write, now, schema::alerts};
use crate::domain::alert::{AlertState, AlertType};

#[derive(Debug, Clone, Queryable)]
pub struct Alert {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub alert_type: AlertType,
    pub handler_id: i64,
    pub handler_name: String,
    pub message: String,
    /// The JSON body POSTed.
    pub payload: String,
    pub created_at: NaiveDateTime,
    #[diesel(deserialize_as = String)]
    pub state: AlertState,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub sent_at: Option<NaiveDateTime>,
}

/// How alerts are raised: whether they are to be sent, and the window within
/// which a handler raises one alert of a type.
#[derive(Debug, Clone, Copy)]
pub struct Raising {
    pub send: bool,
    pub window: std::time::Duration,
}

impl Alert {
    /// Raises an alert of `alert_type` about handler `handler_id` (named
    /// `name`), unless one of that type about it was raised within the
    /// window; whether it was. `extra`: more fields of the body.
    pub fn raise(
        conn: &mut Write<'_>,
        how: Raising,
        alert_type: AlertType,
        (handler_id, name): (i64, &str),
        message: &str,
        extra: serde_json::Value,
    ) -> QueryResult<bool> {
        let at = now();
        let since = chrono::TimeDelta::from_std(how.window)
            .ok()
            .and_then(|window| at.checked_sub_signed(window))
            .unwrap_or(NaiveDateTime::MIN);
        let recent: i64 = alerts::table
            .filter(alerts::handler_id.eq(handler_id))
            .filter(alerts::alert_type.eq(alert_type.as_str()))
            .filter(alerts::created_at.gt(since))
            .count()
            .get_result(conn.db())?;
        if recent > 0 {
            return Ok(false);
        }
        let mut body = serde_json::json!({
            "type": alert_type.as_str(),
            "at": super::health::utc(at),
            "handler": {"id": handler_id, "name": name},
            "message": message,
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        let state = if how.send { AlertState::Pending } else { AlertState::Unsent };
        diesel::insert_into(alerts::table)
            .values((
                alerts::alert_type.eq(alert_type.as_str()),
                alerts::handler_id.eq(handler_id),
                alerts::handler_name.eq(name),
                alerts::message.eq(message),
                alerts::payload.eq(body.to_string()),
                alerts::created_at.eq(at),
                alerts::state.eq(state.as_str()),
                alerts::next_attempt_at.eq(at),
            ))
            .execute(conn.db())?;
        Ok(true)
    }

    /// The newest `limit` alerts, newest first.
    pub fn recent(conn: &mut Read<'_>, limit: i64) -> QueryResult<Vec<Alert>> {
        alerts::table.order(alerts::id.desc()).limit(limit).load(conn.db())
    }

    /// The alerts due to be sent now, oldest first, leased to the caller
    /// until `lease_until` (on PostgreSQL, rows another process is taking
    /// are skipped).
    pub fn take_due(conn: &mut Write<'_>, lease_until: NaiveDateTime, limit: i64) -> QueryResult<Vec<Alert>> {
        let at = now();
        let due = alerts::table
            .filter(alerts::state.eq(AlertState::Pending.as_str()))
            .filter(alerts::next_attempt_at.le(at))
            .order(alerts::next_attempt_at)
            .limit(limit)
            .select(alerts::id);
        let ids: Vec<i64> = match conn.db() {
            DbConnection::Postgres(pg) => due.for_update().skip_locked().load(pg)?,
            DbConnection::Sqlite(sqlite) => due.load(sqlite)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Leased: another process (or this one, after a crash) takes it again after that.
        diesel::update(alerts::table.filter(alerts::id.eq_any(&ids)))
            .set((alerts::next_attempt_at.eq(lease_until), alerts::attempts.eq(alerts::attempts + 1)))
            .execute(conn.db())?;
        alerts::table.filter(alerts::id.eq_any(&ids)).order(alerts::id).load(conn.db())
    }

    /// Records how the POST of alert `id` went: sent, or `error` and the next
    /// try at `retry_at` (`None`: its attempts ran out).
    pub fn record(
        conn: &mut Write<'_>,
        id: i64,
        result: Result<(), (String, Option<NaiveDateTime>)>,
    ) -> QueryResult<usize> {
        // Only while it is still pending: a late answer never undoes a result.
        let target = alerts::table.find(id).filter(alerts::state.eq(AlertState::Pending.as_str()));
        match result {
            Ok(()) => diesel::update(target)
                .set((
                    alerts::state.eq(AlertState::Sent.as_str()),
                    alerts::sent_at.eq(now()),
                    alerts::last_error.eq(None::<String>),
                ))
                .execute(conn.db()),
            Err((error, Some(at))) => diesel::update(target)
                .set((alerts::next_attempt_at.eq(at), alerts::last_error.eq(error)))
                .execute(conn.db()),
            Err((error, None)) => diesel::update(target)
                .set((alerts::state.eq(AlertState::Failed.as_str()), alerts::last_error.eq(error)))
                .execute(conn.db()),
        }
    }

    /// Removes alerts raised before `before` (retention); how many.
    pub fn prune(conn: &mut Write<'_>, before: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(alerts::table.filter(alerts::created_at.lt(before))).execute(conn.db())
    }
}

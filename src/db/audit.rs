//! The `audit_log` table: who changed what, when (DESIGN §8.3). A change and
//! its entry are written in one transaction: there is no change without its
//! entry, nor an entry for a change that did not happen.

use chrono::NaiveDateTime;
use diesel::{
    prelude::*,
    sql_types::{BigInt, Timestamp},
};

use super::{Read, Write, now, schema::audit_log, text::contains_pattern};

#[derive(Debug, Clone, Queryable)]
#[diesel(table_name = audit_log)]
pub struct AuditEntry {
    pub id: i64,
    pub at: NaiveDateTime,
    /// The user name, or `token:<name>`.
    pub actor: String,
    /// What was done: `handler.update`, `user.create`, `delivery.retry`…
    pub action: String,
    /// What it was done to: `handler 12`, `user 3 (alice)`…
    pub target: String,
    /// A JSON object: field → `{"old", "new"}` (secrets redacted), or details.
    pub changes: String,
}

/// The audit page's and API's filters; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// An exact action, or a prefix ending in `.` (`handler.`).
    pub action: Option<String>,
    /// Text the target contains.
    pub target: Option<String>,
    pub from: Option<NaiveDateTime>,
    pub to: Option<NaiveDateTime>,
}

impl AuditEntry {
    /// Records one change, in the transaction that makes it.
    pub fn record(
        conn: &mut Write<'_>,
        actor: &str,
        action: &str,
        target: &str,
        changes: &serde_json::Value,
    ) -> QueryResult<()> {
        diesel::insert_into(audit_log::table)
            .values((
                audit_log::at.eq(now()),
                audit_log::actor.eq(actor),
                audit_log::action.eq(action),
                audit_log::target.eq(target),
                audit_log::changes.eq(changes.to_string()),
            ))
            .execute(conn.db())
            .map(drop)
    }

    /// Entries newest first, older than entry `before` when given; `limit`
    /// of them and whether there are more.
    pub fn page(
        conn: &mut Read<'_>,
        filter: &AuditFilter,
        before: Option<i64>,
        limit: i64,
    ) -> QueryResult<(Vec<AuditEntry>, bool)> {
        let mut q = audit_log::table.into_boxed();
        if let Some(actor) = &filter.actor {
            q = q.filter(audit_log::actor.eq(actor.clone()));
        }
        match filter.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                q = q.filter(audit_log::action.like(format!("{}%", super::text::escape_like(prefix))).escape('\\'))
            }
            Some(action) => q = q.filter(audit_log::action.eq(action.to_owned())),
            None => {}
        }
        if let Some(text) = &filter.target {
            q = q.filter(audit_log::target.like(contains_pattern(text)).escape('\\'));
        }
        if let Some(from) = filter.from {
            q = q.filter(audit_log::at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(audit_log::at.lt(to));
        }
        if let Some(before) = before {
            q = q.filter(audit_log::id.lt(before));
        }
        let mut rows: Vec<AuditEntry> = q.order(audit_log::id.desc()).limit(limit + 1).load(conn.db())?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }

    /// Removes up to `batch` entries older than `before`; returns how many.
    pub fn prune(conn: &mut Write<'_>, before: NaiveDateTime, batch: i64) -> QueryResult<usize> {
        diesel::sql_query(
            "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind::<Timestamp, _>(before)
        .bind::<BigInt, _>(batch)
        .execute(conn.db())
    }
}

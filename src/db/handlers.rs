//! The `handlers` table.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use super::{
    DbConnection, Read, Write,
    deliveries::Delivery,
    now,
    schema::{deleted_handlers, handlers},
};
use crate::domain::{HandlerForm, HandlerStatus, HandlerType, RateLimit, ValidHandler};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Identifiable, Serialize)]
#[diesel(table_name = handlers)]
pub struct Handler {
    pub id: i64,
    pub name: String,
    pub events_id: String,
    #[serde(rename = "type")]
    #[diesel(deserialize_as = String)]
    pub handler_type: HandlerType,
    pub target: String,
    #[diesel(deserialize_as = String)]
    pub status: HandlerStatus,
    pub priority: i32,
    pub timeout_ms: i32,
    pub secret: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub ordering_group: Option<String>,
    /// The secret before the last rotation, which signs beside the new one
    /// until `previous_secret_until` (never shown, never in the audit log).
    #[serde(skip)]
    pub previous_secret: Option<String>,
    #[serde(skip)]
    pub previous_secret_until: Option<NaiveDateTime>,
    /// An answer's `Retry-After` holds back every attempt until then (DESIGN §8.2).
    #[serde(skip)]
    pub hold_until: Option<NaiveDateTime>,
    /// Its own retry schedule as written (`none`: no retry); `None`: the global one.
    pub retry_schedule: Option<String>,
    /// The most attempts its schedule gives (kept for ingestion).
    #[serde(skip)]
    pub max_attempts: Option<i32>,
    /// Its rate limit in thousandths of an attempt a second (see [`Handler::rate_limit`]).
    #[serde(skip)]
    pub rate_limit_milli: Option<i32>,
    /// The earliest start of its next attempt, given those the claim handed out.
    #[serde(skip)]
    pub rate_next: Option<NaiveDateTime>,
    /// Its attempts that failed in a row, since when, and whether
    /// `handler.failing` was raised for them (DESIGN §8.6).
    #[serde(skip)]
    pub failures_in_a_row: i32,
    #[serde(skip)]
    pub failing_since: Option<NaiveDateTime>,
    #[serde(skip)]
    pub failing_alerted: bool,
    /// When it was disabled for failing (`PROVISIOND_AUTO_DISABLE_AFTER`).
    #[serde(skip)]
    pub auto_disabled_at: Option<NaiveDateTime>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = handlers)]
pub struct NewHandler {
    pub name: String,
    pub events_id: String,
    pub handler_type: String,
    pub target: String,
    pub status: String,
    pub priority: i32,
    pub timeout_ms: i32,
    pub secret: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub ordering_group: Option<String>,
    pub retry_schedule: Option<String>,
    pub max_attempts: Option<i32>,
    pub rate_limit_milli: Option<i32>,
}

/// A handler's new values; a blank ordering group is written as NULL.
#[derive(Debug, AsChangeset)]
#[diesel(table_name = handlers, treat_none_as_null = true)]
pub struct HandlerChangeset {
    pub name: String,
    pub events_id: String,
    pub handler_type: String,
    pub target: String,
    pub status: String,
    pub priority: i32,
    pub timeout_ms: i32,
    pub updated_at: NaiveDateTime,
    pub ordering_group: Option<String>,
    pub retry_schedule: Option<String>,
    pub max_attempts: Option<i32>,
    pub rate_limit_milli: Option<i32>,
}

/// A handler's own retry schedule as stored: its text (`none` for no
/// retry) and the most attempts it gives; blank: neither (the global one).
fn stored_schedule(schedule: Option<&crate::domain::RetrySchedule>) -> (Option<String>, Option<i32>) {
    match schedule {
        None => (None, None),
        Some(s) => {
            let max = i32::try_from(s.max_attempts()).unwrap_or(i32::MAX);
            let text = if max == 1 { "none".to_owned() } else { s.to_string() };
            (Some(text), Some(max))
        }
    }
}

impl NewHandler {
    pub fn new(valid: ValidHandler, secret: String) -> Self {
        let at = now();
        Self {
            name: valid.name,
            events_id: valid.events_id,
            handler_type: valid.handler_type.as_str().to_owned(),
            target: valid.target,
            status: valid.status.as_str().to_owned(),
            priority: valid.priority,
            timeout_ms: valid.timeout_ms,
            secret,
            created_at: at,
            updated_at: at,
            retry_schedule: stored_schedule(valid.retry_schedule.as_ref()).0,
            max_attempts: stored_schedule(valid.retry_schedule.as_ref()).1,
            rate_limit_milli: valid.rate_limit.map(RateLimit::milli),
            ordering_group: valid.ordering_group,
        }
    }
}

impl From<ValidHandler> for HandlerChangeset {
    fn from(valid: ValidHandler) -> Self {
        Self {
            name: valid.name,
            events_id: valid.events_id,
            handler_type: valid.handler_type.as_str().to_owned(),
            target: valid.target,
            status: valid.status.as_str().to_owned(),
            priority: valid.priority,
            timeout_ms: valid.timeout_ms,
            updated_at: now(),
            retry_schedule: stored_schedule(valid.retry_schedule.as_ref()).0,
            max_attempts: stored_schedule(valid.retry_schedule.as_ref()).1,
            rate_limit_milli: valid.rate_limit.map(RateLimit::milli),
            ordering_group: valid.ordering_group,
        }
    }
}

/// The Advanced Search: every part optional; no status means enabled and disabled.
#[derive(Debug, Clone, Default)]
pub struct HandlerFilter {
    pub events_id: Option<String>,
    pub handler_type: Option<HandlerType>,
    pub status: Option<HandlerStatus>,
    /// Text the name or the target contains, in any case.
    pub text: Option<String>,
    /// The order of the list.
    pub sort: HandlerSort,
}

/// A column the handler list sorts by, and which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandlerSort {
    pub column: SortColumn,
    pub descending: bool,
}

/// The handler list's sortable columns; ties go by id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortColumn {
    Id,
    /// Priority then id: the order of the chain (the default).
    #[default]
    Priority,
    Name,
    Event,
    Type,
    Target,
    Status,
}

impl SortColumn {
    pub const ALL: [SortColumn; 7] = [
        SortColumn::Id,
        SortColumn::Priority,
        SortColumn::Name,
        SortColumn::Event,
        SortColumn::Type,
        SortColumn::Target,
        SortColumn::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SortColumn::Id => "id",
            SortColumn::Priority => "priority",
            SortColumn::Name => "name",
            SortColumn::Event => "event",
            SortColumn::Type => "type",
            SortColumn::Target => "target",
            SortColumn::Status => "status",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

diesel::define_sql_function! {
    /// SQL's `lower`, the same on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

impl Handler {
    /// The form filled with this handler, for editing.
    pub fn to_form(&self) -> HandlerForm {
        HandlerForm {
            name: self.name.clone(),
            events_id: self.events_id.clone(),
            handler_type: self.handler_type.as_str().to_owned(),
            target: self.target.clone(),
            status: self.status.as_str().to_owned(),
            priority: self.priority.to_string(),
            timeout_ms: self.timeout_ms.to_string(),
            ordering_group: self.ordering_group.clone().unwrap_or_default(),
            signature: crate::domain::signing::Scheme::of(&self.secret).as_str().to_owned(),
            retry_schedule: self.retry_schedule.clone().unwrap_or_default(),
            rate_limit: self.rate_limit().map(|r| r.to_string()).unwrap_or_default(),
        }
    }

    pub fn find(conn: &mut Read<'_>, id: i64) -> QueryResult<Handler> {
        handlers::table.find(id).first(conn.db())
    }

    /// [`Handler::find`], `None` when there is none (it was deleted).
    pub fn find_optional(conn: &mut Read<'_>, id: i64) -> QueryResult<Option<Handler>> {
        handlers::table.find(id).first(conn.db()).optional()
    }

    /// The names of the given handlers; a deleted one's as it was when it
    /// was deleted (its logs outlive it).
    pub fn names(conn: &mut Read<'_>, ids: &[i64]) -> QueryResult<std::collections::HashMap<i64, String>> {
        let mut names: std::collections::HashMap<i64, String> = handlers::table
            .filter(handlers::id.eq_any(ids))
            .select((handlers::id, handlers::name))
            .load::<(i64, String)>(conn.db())?
            .into_iter()
            .collect();
        let gone: Vec<i64> = ids.iter().copied().filter(|id| !names.contains_key(id)).collect();
        if !gone.is_empty() {
            let deleted: Vec<(i64, String)> = deleted_handlers::table
                .filter(deleted_handlers::id.eq_any(&gone))
                .select((deleted_handlers::id, deleted_handlers::name))
                .load(conn.db())?;
            names.extend(deleted.into_iter().map(|(id, name)| (id, format!("{name} (deleted)"))));
        }
        Ok(names)
    }

    /// The enabled handlers (of one event type, when given), by priority then id.
    pub fn enabled(conn: &mut Read<'_>, events_id: Option<&str>) -> QueryResult<Vec<Handler>> {
        let mut q = handlers::table.filter(handlers::status.eq("enabled")).into_boxed();
        if let Some(e) = events_id {
            q = q.filter(handlers::events_id.eq(e.to_owned()));
        }
        q.order((handlers::priority.asc(), handlers::id.asc())).limit(1000).load(conn.db())
    }

    /// One page of the list, sorted by priority then id, and the total count.
    pub fn list(
        conn: &mut Read<'_>,
        filter: &HandlerFilter,
        offset: i64,
        limit: i64,
    ) -> QueryResult<(Vec<Handler>, i64)> {
        let query = || {
            let mut q = handlers::table.into_boxed();
            if let Some(event) = &filter.events_id {
                q = q.filter(handlers::events_id.eq(event.clone()));
            }
            if let Some(t) = filter.handler_type {
                q = q.filter(handlers::handler_type.eq(t.as_str()));
            }
            q = match filter.status {
                Some(s) => q.filter(handlers::status.eq(s.as_str())),
                None => q.filter(handlers::status.eq_any([
                    HandlerStatus::Enabled.as_str(),
                    HandlerStatus::Paused.as_str(),
                    HandlerStatus::Disabled.as_str(),
                ])),
            };
            if let Some(text) = &filter.text {
                let pattern = super::text::contains_pattern(&text.to_lowercase());
                q = q.filter(
                    lower(handlers::name)
                        .like(pattern.clone())
                        .escape('\\')
                        .or(lower(handlers::target).like(pattern).escape('\\')),
                );
            }
            q
        };
        let total = query().count().get_result(conn.db())?;
        let HandlerSort { column, descending } = filter.sort;
        macro_rules! by {
            ($column:expr) => {
                if descending {
                    query().order(($column.desc(), handlers::id.desc()))
                } else {
                    query().order(($column.asc(), handlers::id.asc()))
                }
            };
        }
        let sorted = match column {
            SortColumn::Id if descending => query().order(handlers::id.desc()),
            SortColumn::Id => query().order(handlers::id.asc()),
            SortColumn::Priority => by!(handlers::priority),
            SortColumn::Name => by!(handlers::name),
            SortColumn::Event => by!(handlers::events_id),
            SortColumn::Type => by!(handlers::handler_type),
            SortColumn::Target => by!(handlers::target),
            SortColumn::Status => by!(handlers::status),
        };
        let rows = sorted.offset(offset).limit(limit).load(conn.db())?;
        Ok((rows, total))
    }

    pub fn create(conn: &mut Write<'_>, new: &NewHandler) -> QueryResult<Handler> {
        let id = diesel::insert_into(handlers::table).values(new).returning(handlers::id).get_result(conn.db())?;
        Self::find(conn, id)
    }

    /// Saves a changed handler; leaving `enabled` cancels its pending deliveries (rule 8).
    ///
    /// A new target or ordering group moves the handler's unfinished
    /// deliveries into its new group (DESIGN §4.4), so its own events stay in
    /// order across the change: its next event about an object waits for the
    /// ones already waiting. (On PostgreSQL an ingestion that read the handler
    /// just before the change commits its deliveries in the old group: the
    /// window of one statement.)
    pub fn update(conn: &mut Write<'_>, id: i64, changes: &HandlerChangeset) -> QueryResult<Handler> {
        Self::restart_run_if_status_changes(conn, id, &changes.status)?;
        let n = diesel::update(handlers::table.find(id)).set(changes).execute(conn.db())?;
        if n == 0 {
            return Err(diesel::result::Error::NotFound);
        }
        let handler = Self::find(conn, id)?;
        Delivery::regroup_unfinished(conn, id, handler.ordering_key())?;
        handler.cancel_pending_unless_enabled(conn)?;
        Ok(handler)
    }

    /// The ordering group its new deliveries are ordered in: its
    /// `ordering_group`, else its target (as ingestion writes it).
    pub fn ordering_key(&self) -> &str {
        self.ordering_group.as_deref().unwrap_or(&self.target)
    }

    /// Changes the status; leaving `enabled` cancels its pending deliveries (rule 8).
    pub fn set_status(conn: &mut Write<'_>, id: i64, status: HandlerStatus) -> QueryResult<Handler> {
        Self::restart_run_if_status_changes(conn, id, status.as_str())?;
        let n = diesel::update(handlers::table.find(id))
            .set((handlers::status.eq(status.as_str()), handlers::updated_at.eq(now())))
            .execute(conn.db())?;
        if n == 0 {
            return Err(diesel::result::Error::NotFound);
        }
        let handler = Self::find(conn, id)?;
        handler.cancel_pending_unless_enabled(conn)?;
        Ok(handler)
    }

    /// A change of status starts the handler afresh (DESIGN §8.6): its run of
    /// failures is forgotten (re-enabled after an automatic disable, it is
    /// not disabled again at its next failure), and so is the mark of an
    /// automatic disable.
    fn restart_run_if_status_changes(conn: &mut Write<'_>, id: i64, status: &str) -> QueryResult<usize> {
        diesel::update(handlers::table.find(id).filter(handlers::status.ne(status)))
            .set((
                handlers::failures_in_a_row.eq(0),
                handlers::failing_since.eq(None::<NaiveDateTime>),
                handlers::failing_alerted.eq(false),
                handlers::auto_disabled_at.eq(None::<NaiveDateTime>),
            ))
            .execute(conn.db())
    }

    /// The handlers an operator should look at (DESIGN §8.6): failing (an
    /// alert was raised for their run of failures) or disabled for failing,
    /// the most recent first.
    pub fn in_trouble(conn: &mut Read<'_>, limit: i64) -> QueryResult<Vec<Handler>> {
        handlers::table
            .filter(
                handlers::failing_alerted
                    .eq(true)
                    .and(handlers::status.eq_any([HandlerStatus::Enabled.as_str(), HandlerStatus::Paused.as_str()]))
                    .or(handlers::status
                        .eq(HandlerStatus::Disabled.as_str())
                        .and(handlers::auto_disabled_at.is_not_null())),
            )
            .order(handlers::updated_at.desc())
            .limit(limit)
            .load(conn.db())
    }

    /// Leaving `enabled` for `disabled` or `archived` cancels its pending
    /// deliveries; for `paused` they stay, out of their events' chains (a
    /// paused handler holds up no other handler of an event).
    fn cancel_pending_unless_enabled(&self, conn: &mut Write<'_>) -> QueryResult<usize> {
        match self.status {
            HandlerStatus::Enabled => Ok(0),
            HandlerStatus::Paused => Delivery::leave_chains(conn, self.id),
            status => {
                Delivery::cancel_pending_of_handler(conn, self.id, &format!("cancelled: the handler was {status}"))
            }
        }
    }

    /// A new signing secret; the old one goes on signing beside it until
    /// `old_signs_until` (`None`: it stops at once).
    pub fn set_secret(
        conn: &mut Write<'_>,
        id: i64,
        secret: &str,
        old_signs_until: Option<NaiveDateTime>,
    ) -> QueryResult<Handler> {
        // The right-hand sides read the row as it was: the old secret.
        let previous = old_signs_until.map(|_| handlers::secret);
        let n = match previous {
            Some(old) => diesel::update(handlers::table.find(id))
                .set((
                    handlers::previous_secret.eq(old.nullable()),
                    handlers::previous_secret_until.eq(old_signs_until),
                    handlers::secret.eq(secret),
                    handlers::updated_at.eq(now()),
                ))
                .execute(conn.db())?,
            None => diesel::update(handlers::table.find(id))
                .set((
                    handlers::previous_secret.eq(None::<String>),
                    handlers::previous_secret_until.eq(None::<NaiveDateTime>),
                    handlers::secret.eq(secret),
                    handlers::updated_at.eq(now()),
                ))
                .execute(conn.db())?,
        };
        if n == 0 {
            return Err(diesel::result::Error::NotFound);
        }
        Self::find(conn, id)
    }

    /// Deletes the handler with its deliveries; its execution logs stay
    /// (until retention), with its name and target kept in
    /// `deleted_handlers`. The handlers after it in its events' chains go on.
    pub fn delete(conn: &mut Write<'_>, id: i64) -> QueryResult<Handler> {
        let handler = Self::find(conn, id)?;
        // On PostgreSQL, the handler's row lock first: an ingestion adding
        // deliveries for it (which holds a key share of the row) is waited
        // for, and its deliveries are among those seen below.
        if let DbConnection::Postgres(_) = conn.db() {
            diesel::sql_query("SELECT id FROM handlers WHERE id = $1 FOR UPDATE")
                .bind::<diesel::sql_types::BigInt, _>(id)
                .execute(conn.db())?;
        }
        let chains = Delivery::chains_held_by(conn, id)?;
        diesel::delete(handlers::table.find(id)).execute(conn.db())?;
        diesel::insert_into(deleted_handlers::table)
            .values((
                deleted_handlers::id.eq(handler.id),
                deleted_handlers::name.eq(&handler.name),
                deleted_handlers::events_id.eq(&handler.events_id),
                deleted_handlers::handler_type.eq(handler.handler_type.as_str()),
                deleted_handlers::target.eq(&handler.target),
                deleted_handlers::deleted_at.eq(now()),
            ))
            .execute(conn.db())?;
        Delivery::unpark(conn, &chains)?;
        Ok(handler)
    }

    /// On PostgreSQL, locks the rows of handlers `ids` (in id order), for a
    /// transaction that then changes their deliveries; SQLite's one writer
    /// needs none.
    pub fn lock(conn: &mut Write<'_>, ids: &[i64], how: RowLock) -> QueryResult<()> {
        if ids.is_empty() || !matches!(conn.db(), DbConnection::Postgres(_)) {
            return Ok(());
        }
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        let ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        let query = match how {
            RowLock::Change => LOCK_TO_CHANGE,
            RowLock::KeepKey => LOCK_KEY,
        };
        diesel::sql_query(query).bind::<diesel::sql_types::Text, _>(ids).execute(conn.db()).map(drop)
    }

    /// Holds back every attempt of handler `id` until `until` (a later hold
    /// already set stays).
    pub fn hold(conn: &mut Write<'_>, id: i64, until: NaiveDateTime) -> QueryResult<usize> {
        diesel::update(
            handlers::table.find(id).filter(handlers::hold_until.is_null().or(handlers::hold_until.lt(until))),
        )
        .set(handlers::hold_until.eq(until))
        .execute(conn.db())
    }

    /// At most so many attempts a second (DESIGN §8.1); `None`: no limit.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit_milli.and_then(RateLimit::from_milli)
    }

    /// Moves the earliest start of handler `id`'s next attempt to `next`
    /// (SQLite's claim; PostgreSQL's moves it in its own statement).
    pub fn pace(conn: &mut Write<'_>, id: i64, next: NaiveDateTime) -> QueryResult<usize> {
        diesel::update(handlers::table.find(id)).set(handlers::rate_next.eq(next)).execute(conn.db())
    }

    /// Whether an answer's `Retry-After` holds it back now: until when.
    pub fn cooling_down_until(&self, now: NaiveDateTime) -> Option<NaiveDateTime> {
        self.hold_until.filter(|until| *until > now)
    }

    /// Forgets the names of handlers deleted before `before` (their logs,
    /// all older, are gone by then).
    pub fn prune_deleted(conn: &mut Write<'_>, before: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(deleted_handlers::table.filter(deleted_handlers::deleted_at.lt(before))).execute(conn.db())
    }
}

/// How [`Handler::lock`] holds a handler's row until the transaction ends.
#[derive(Clone, Copy, Debug)]
pub enum RowLock {
    /// Against every other change (`FOR NO KEY UPDATE`): the row is changed.
    Change,
    /// Only against its deletion (`FOR KEY SHARE`, what a row referencing it
    /// takes): the transaction adds to or records against the handler.
    KeepKey,
}

const LOCK_TO_CHANGE: &str = "SELECT id FROM handlers
 WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)))
 ORDER BY id FOR NO KEY UPDATE";

const LOCK_KEY: &str = "SELECT id FROM handlers
 WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)))
 ORDER BY id FOR KEY SHARE";

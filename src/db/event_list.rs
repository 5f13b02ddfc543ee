//! The events list (DESIGN §8.5): every event received, those no handler
//! matched included, newest first, with how many deliveries each got.

use std::collections::HashMap;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{
    Read,
    events::Event,
    schema::{deliveries, events},
};

/// The list's filters; all optional.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub events_id: Option<String>,
    pub object_id: Option<String>,
    /// Received at or after.
    pub from: Option<NaiveDateTime>,
    /// Received before.
    pub to: Option<NaiveDateTime>,
}

/// One page: the events with their delivery counts, and whether older ones follow.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub rows: Vec<(Event, i64)>,
    pub more: bool,
}

impl EventPage {
    /// Newest first, older than event `before` when given.
    pub fn load(conn: &mut Read<'_>, filter: &EventFilter, before: Option<i64>, limit: i64) -> QueryResult<Self> {
        let mut q = events::table.into_boxed();
        if let Some(e) = &filter.events_id {
            q = q.filter(events::events_id.eq(e.clone()));
        }
        if let Some(o) = &filter.object_id {
            q = q.filter(events::object_id.eq(o.clone()));
        }
        if let Some(from) = filter.from {
            q = q.filter(events::received_at.ge(from));
        }
        if let Some(to) = filter.to {
            q = q.filter(events::received_at.lt(to));
        }
        if let Some(before) = before {
            q = q.filter(events::id.lt(before));
        }
        let mut rows: Vec<Event> = q.order(events::id.desc()).limit(limit + 1).load(conn.db())?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let ids: Vec<i64> = rows.iter().map(|e| e.id).collect();
        let counts: HashMap<i64, i64> = deliveries::table
            .filter(deliveries::event_id.eq_any(&ids))
            .group_by(deliveries::event_id)
            .select((deliveries::event_id, diesel::dsl::count_star()))
            .load::<(i64, i64)>(conn.db())?
            .into_iter()
            .collect();
        let rows =
            rows.into_iter().map(|e| (counts.get(&e.id).copied().unwrap_or(0), e)).map(|(n, e)| (e, n)).collect();
        Ok(Self { rows, more })
    }
}

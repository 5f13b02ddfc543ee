//! The filters of the deliveries and events lists as a page or the API
//! receives them (DESIGN §8.5), read once for both — and kept, as typed, by a
//! bulk retry or a replay, which reads them again for each batch.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use crate::{
    db::{
        delivery_list::{DeliveryFilter, StandingFilter},
        event_list::EventFilter,
    },
    domain::{FieldErrors, duration::parse_instant},
};

/// The deliveries list's filters as typed: `handler_id`, `event_id`,
/// `event`, `state`, `object_id`, `from`, `to`, and the `before` cursor.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DeliveryQuery {
    pub handler_id: String,
    /// One event's deliveries.
    pub event_id: String,
    pub event: String,
    pub state: String,
    pub object_id: String,
    pub from: String,
    pub to: String,
    pub before: String,
}

impl DeliveryQuery {
    /// The filter and the cursor, or a message by field for what is wrong.
    pub fn parse(&self) -> Result<(DeliveryFilter, Option<i64>), FieldErrors> {
        let mut errors = FieldErrors::default();
        let fields = [
            ("handler_id", &self.handler_id),
            ("event_id", &self.event_id),
            ("event", &self.event),
            ("state", &self.state),
            ("object_id", &self.object_id),
            ("from", &self.from),
            ("to", &self.to),
            ("before", &self.before),
        ];
        if refuse_nul(&mut errors, &fields) {
            return Err(errors);
        }
        let handler_id = id(&mut errors, "handler_id", &self.handler_id, "a number");
        let before = id(&mut errors, "before", &self.before, "a number");
        let event_id = id(&mut errors, "event_id", &self.event_id, "a number");
        let events_id = catalogue_event(&mut errors, &self.event);
        let state = text(&self.state).and_then(|s| {
            s.parse::<StandingFilter>().map_err(|e| errors.add("state", format!("`{s}` is not a state: it {e}"))).ok()
        });
        let (from, to) = range(&mut errors, &self.from, &self.to);
        if !errors.is_empty() {
            return Err(errors);
        }
        let filter =
            DeliveryFilter { handler_id, event_id, events_id, state, object_id: text(&self.object_id), from, to };
        Ok((filter, before))
    }
}

/// The events list's filters as typed: `event`, `object_id`, `from`, `to`,
/// and the `before` cursor.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct EventQuery {
    pub event: String,
    pub object_id: String,
    pub from: String,
    pub to: String,
    pub before: String,
}

impl EventQuery {
    /// The filter and the cursor, or a message by field for what is wrong.
    pub fn parse(&self) -> Result<(EventFilter, Option<i64>), FieldErrors> {
        let mut errors = FieldErrors::default();
        let fields = [
            ("event", &self.event),
            ("object_id", &self.object_id),
            ("from", &self.from),
            ("to", &self.to),
            ("before", &self.before),
        ];
        if refuse_nul(&mut errors, &fields) {
            return Err(errors);
        }
        let events_id = catalogue_event(&mut errors, &self.event);
        let before = id(&mut errors, "before", &self.before, "an event id");
        let (from, to) = range(&mut errors, &self.from, &self.to);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok((EventFilter { events_id, object_id: text(&self.object_id), from, to }, before))
    }
}

/// The text of a field, `None` when blank.
fn text(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// An id field (`None` when blank); what does not read is named as not `what`.
fn id(errors: &mut FieldErrors, field: &str, s: &str, what: &str) -> Option<i64> {
    match s.trim() {
        "" => None,
        n => n.parse::<i64>().map_err(|_| errors.add(field, format!("`{n}` is not {what}"))).ok(),
    }
}

/// The `event` field: an event of the catalogue, or blank.
fn catalogue_event(errors: &mut FieldErrors, s: &str) -> Option<String> {
    let events_id = text(s);
    if events_id.as_deref().is_some_and(|e| crate::catalogue::find(e).is_none()) {
        errors.add("event", "not an event of the catalogue");
    }
    events_id
}

/// The `from` and `to` fields: a time range, a bare date as `to` meaning its day's end.
fn range(errors: &mut FieldErrors, from: &str, to: &str) -> (Option<NaiveDateTime>, Option<NaiveDateTime>) {
    let from = parse_instant(from, false).map_err(|e| errors.add("from", e)).ok().flatten();
    let to = parse_instant(to, true).map_err(|e| errors.add("to", e)).ok().flatten();
    (from, to)
}

/// A NUL character in any field (a JSON body can hold one; no database text
/// can) is named; whether there was one.
fn refuse_nul(errors: &mut FieldErrors, fields: &[(&str, &String)]) -> bool {
    for (name, value) in fields {
        if value.contains('\0') {
            errors.add(name, "must not contain a NUL character");
        }
    }
    !errors.is_empty()
}

/// Field errors as one sentence, for a page's 400.
pub fn in_one_line(errors: &FieldErrors) -> String {
    let message: Vec<String> = errors.iter().map(|(field, m)| format!("{field}: {m}")).collect();
    format!("{}.", message.join("; "))
}

//! The deliveries list's filters as a page or the API receives them (DESIGN
//! §8.5): `handler_id`, `event`, `state`, `object_id`, `from`, `to`, and the
//! `before` cursor, read once for both.

use serde::Deserialize;

use crate::{
    db::delivery_list::{DeliveryFilter, StandingFilter},
    domain::{FieldErrors, duration::parse_instant},
};

/// The filters as typed.
#[derive(Debug, Clone, Default, Deserialize)]
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
        let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        let mut id = |field: &str, s: &str| match s.trim() {
            "" => None,
            n => n.parse::<i64>().map_err(|_| errors.add(field, format!("`{n}` is not a number"))).ok(),
        };
        let (handler_id, before) = (id("handler_id", &self.handler_id), id("before", &self.before));
        let event_id = id("event_id", &self.event_id);
        let events_id = text(&self.event);
        if events_id.as_deref().is_some_and(|e| crate::catalogue::find(e).is_none()) {
            errors.add("event", "not an event of the catalogue");
        }
        let state = text(&self.state).and_then(|s| {
            s.parse::<StandingFilter>().map_err(|e| errors.add("state", format!("`{s}` is not a state: it {e}"))).ok()
        });
        let from = parse_instant(&self.from, false).map_err(|e| errors.add("from", e)).ok().flatten();
        let to = parse_instant(&self.to, true).map_err(|e| errors.add("to", e)).ok().flatten();
        if !errors.is_empty() {
            return Err(errors);
        }
        let filter =
            DeliveryFilter { handler_id, event_id, events_id, state, object_id: text(&self.object_id), from, to };
        Ok((filter, before))
    }
}

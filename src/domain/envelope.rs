//! The event envelope a producer posts and a handler receives (DESIGN §3.3):
//! `{"event": {"dt", "events_id", "object_id"}, "data": ...}`.

use serde_json::{Map, Value};

use crate::catalogue::{self, EventType};

/// An envelope that passed every rule, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidEvent {
    pub event_type: &'static EventType,
    /// The object id as text: a number's digits or the string itself, so that
    /// `12` and `"12"` are the same object for ordering.
    pub object_id: String,
    /// The envelope a handler will receive: the posted bytes when `dt` was
    /// given, otherwise the posted value with `dt` filled in.
    pub payload: String,
}

/// Why an envelope was refused; the text names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all (400).
    #[error("{0}")]
    Malformed(String),
    /// JSON, but not a valid envelope (422).
    #[error("{0}")]
    Invalid(String),
}

/// Reads and checks a posted envelope. `now` fills a missing `dt`.
pub fn parse_envelope(body: &[u8], now: impl FnOnce() -> String) -> Result<ValidEvent, EnvelopeError> {
    let invalid = |m: &str| EnvelopeError::Invalid(m.to_owned());
    let mut root: Value = serde_json::from_slice(body)
        .map_err(|e| EnvelopeError::Malformed(format!("the body is not valid JSON: {e}")))?;
    let envelope =
        root.as_object_mut().ok_or_else(|| invalid("the body must be a JSON object with `event` and `data`"))?;
    if !envelope.contains_key("data") {
        return Err(invalid("missing field `data` (any JSON value, e.g. {} or [])"));
    }
    let event = match envelope.get_mut("event") {
        Some(Value::Object(event)) => event,
        Some(_) => return Err(invalid("`event` must be an object with `events_id` and `object_id`")),
        None => return Err(invalid("missing field `event`")),
    };
    let event_type = match event.get("events_id") {
        Some(Value::String(id)) => catalogue::find(id).ok_or_else(|| {
            EnvelopeError::Invalid(format!("unknown events_id `{id}`: not an event of the catalogue"))
        })?,
        Some(_) => return Err(invalid("`event.events_id` must be a string, e.g. \"clients.create\"")),
        None => return Err(invalid("missing field `event.events_id`")),
    };
    let object_id = match event.get("object_id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) if s.contains('\0') => {
            return Err(invalid("`event.object_id` must not contain a NUL character (\\u0000)"));
        }
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        Some(Value::String(_)) => return Err(invalid("`event.object_id` must be 1 to 255 characters")),
        Some(_) => return Err(invalid("`event.object_id` must be a number or a string")),
        None => return Err(invalid("missing field `event.object_id`")),
    };
    let payload = match event.get("dt") {
        Some(Value::String(dt)) if is_iso8601(dt) => String::from_utf8_lossy(body).into_owned(),
        Some(Value::String(dt)) => {
            return Err(EnvelopeError::Invalid(format!(
                "`event.dt` `{dt}` is not an ISO-8601 date-time, e.g. 2000-01-01T00:00:00+00:00"
            )));
        }
        Some(Value::Null) | None => {
            insert_dt(event, now());
            root.to_string()
        }
        Some(_) => return Err(invalid("`event.dt` must be an ISO-8601 string")),
    };
    Ok(ValidEvent { event_type, object_id, payload })
}

fn insert_dt(event: &mut Map<String, Value>, dt: String) {
    event.insert("dt".into(), Value::String(dt));
}

/// RFC 3339 (with an offset), or a date-time without one (read as UTC).
fn is_iso8601(text: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(text).is_ok()
        || ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .any(|f| chrono::NaiveDateTime::parse_from_str(text, f).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<ValidEvent, EnvelopeError> {
        parse_envelope(body.as_bytes(), || "2026-11-24T10:00:00.000000+00:00".into())
    }

    #[test]
    fn keeps_the_posted_bytes_when_dt_is_given() {
        let body = r#"{"event": {"dt": "2000-01-01T00:00:00+00:00", "events_id": "clients.create", "object_id": 12}, "data": {"id": 12, "x": 1.50}}"#;
        let v = parse(body).unwrap();
        assert_eq!(v.payload, body);
        assert_eq!(v.object_id, "12");
        assert_eq!(v.event_type.id, "clients.create");
    }

    #[test]
    fn fills_a_missing_dt_and_keeps_the_object_id_type() {
        let v =
            parse(r#"{"event": {"events_id": "importd.process_failed", "object_id": "imp-7"}, "data": []}"#).unwrap();
        let back: Value = serde_json::from_str(&v.payload).unwrap();
        assert_eq!(back["event"]["dt"], "2026-11-24T10:00:00.000000+00:00");
        assert_eq!(back["event"]["object_id"], "imp-7");
        assert_eq!(back["data"], serde_json::json!([]));
        assert_eq!(v.object_id, "imp-7");
    }

    #[test]
    fn names_each_problem() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "must be a JSON object"),
            (r#"{"event": {"events_id": "clients.create", "object_id": 1}}"#, "missing field `data`"),
            (r#"{"data": {}}"#, "missing field `event`"),
            (r#"{"event": 5, "data": {}}"#, "`event` must be an object"),
            (r#"{"event": {"object_id": 1}, "data": {}}"#, "missing field `event.events_id`"),
            (
                r#"{"event": {"events_id": "clients.explode", "object_id": 1}, "data": {}}"#,
                "unknown events_id `clients.explode`",
            ),
            (r#"{"event": {"events_id": 7, "object_id": 1}, "data": {}}"#, "must be a string"),
            (r#"{"event": {"events_id": "clients.create"}, "data": {}}"#, "missing field `event.object_id`"),
            (
                r#"{"event": {"events_id": "clients.create", "object_id": null}, "data": {}}"#,
                "must be a number or a string",
            ),
            (r#"{"event": {"events_id": "clients.create", "object_id": ""}, "data": {}}"#, "1 to 255 characters"),
            (
                r#"{"event": {"events_id": "clients.create", "object_id": 1, "dt": "yesterday"}, "data": {}}"#,
                "not an ISO-8601",
            ),
            (
                r#"{"event": {"events_id": "clients.create", "object_id": 1, "dt": 5}, "data": {}}"#,
                "must be an ISO-8601 string",
            ),
        ];
        for (body, needle) in cases {
            let err = parse(body).unwrap_err();
            let text = match &err {
                EnvelopeError::Malformed(t) | EnvelopeError::Invalid(t) => t,
            };
            assert!(text.contains(needle), "{body}: {text}");
            assert_eq!(matches!(err, EnvelopeError::Malformed(_)), body == "{", "{body}");
        }
    }

    #[test]
    fn accepts_common_iso_forms() {
        for dt in
            ["2000-01-01T00:00:00+00:00", "2000-01-01T00:00:00Z", "2000-01-01T00:00:00.123Z", "2000-01-01 00:00:00"]
        {
            let body = format!(
                r#"{{"event": {{"events_id": "clients.create", "object_id": 1, "dt": "{dt}"}}, "data": {{}}}}"#
            );
            assert!(parse(&body).is_ok(), "{dt}");
        }
    }
}

//! What the audit log records of a change (DESIGN §8.3): the actor, the
//! action, the target and the fields changed, old → new, with every secret
//! redacted. Each use case records its entry in the transaction of its change.

use serde_json::{Map, Value, json};

use super::access::Actor;
use crate::db::{QueryResult, Write, audit::AuditEntry, handlers::Handler};

/// What the audit log shows in place of a secret.
pub const REDACTED: &str = "(redacted)";

/// Fields of a handler the audit log leaves out: they change with every edit.
const UNTRACKED: &[&str] = &["id", "created_at", "updated_at"];
/// Fields of a handler recorded only as changed, never by value.
const SECRET: &[&str] = &["secret"];

/// Records one entry.
pub(super) fn record(
    conn: &mut Write<'_>,
    actor: &Actor,
    action: &str,
    target: &str,
    changes: Value,
) -> QueryResult<()> {
    AuditEntry::record(conn, &actor.audit_name(), action, target, &changes)
}

/// How the audit log names a handler: `handler 12 (Billing sync)`.
pub(super) fn handler_target(handler: &Handler) -> String {
    format!("handler {} ({})", handler.id, handler.name)
}

/// The fields that differ between two versions of a handler (`None`: it did
/// not exist before, or does not after), as `{"field": {"old", "new"}}`.
pub(super) fn handler_changes(old: Option<&Handler>, new: Option<&Handler>) -> Value {
    let fields = |h: Option<&Handler>| match h.map(serde_json::to_value) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    };
    let (old, new) = (fields(old), fields(new));
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes = Map::new();
    for key in keys {
        if UNTRACKED.contains(&key.as_str()) {
            continue;
        }
        let (before, after) = (old.get(key), new.get(key));
        if before == after {
            continue;
        }
        let shown = |v: Option<&Value>| match v {
            None => Value::Null,
            Some(_) if SECRET.contains(&key.as_str()) => json!(REDACTED),
            Some(v) => v.clone(),
        };
        changes.insert(key.clone(), json!({ "old": shown(before), "new": shown(after) }));
    }
    Value::Object(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{HandlerStatus, HandlerType};

    fn handler() -> Handler {
        let at = chrono::NaiveDateTime::default();
        Handler {
            id: 7,
            name: "Billing".into(),
            events_id: "clients.create".into(),
            handler_type: HandlerType::Http,
            target: "http://a.example/hook".into(),
            status: HandlerStatus::Enabled,
            priority: 0,
            timeout_ms: 5000,
            secret: "whsec_c2VjcmV0".into(),
            created_at: at,
            updated_at: at,
            ordering_group: None,
            previous_secret: None,
            previous_secret_until: None,
            hold_until: None,
            retry_schedule: None,
            max_attempts: None,
            rate_limit_milli: None,
            rate_next: None,
            failures_in_a_row: 0,
            failing_since: None,
            failing_alerted: false,
            auto_disabled_at: None,
        }
    }

    #[test]
    fn changes_are_old_to_new_with_secrets_redacted() {
        let old = handler();
        let new = Handler {
            target: "http://b.example/hook".into(),
            secret: "whsec_bmV3".into(),
            updated_at: chrono::NaiveDateTime::MAX,
            ..old.clone()
        };
        let changes = handler_changes(Some(&old), Some(&new));
        assert_eq!(
            changes,
            json!({
                "secret": {"old": REDACTED, "new": REDACTED},
                "target": {"old": "http://a.example/hook", "new": "http://b.example/hook"},
            })
        );
        let created = handler_changes(None, Some(&old));
        assert_eq!(created["name"], json!({"old": null, "new": "Billing"}));
        assert_eq!(created["secret"], json!({"old": null, "new": REDACTED}));
        assert!(!created.to_string().contains("c2VjcmV0"), "no secret in {created}");
    }
}

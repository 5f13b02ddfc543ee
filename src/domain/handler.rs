//! The handler form and its validation (DESIGN §3.2), shared by the web form and the API.

use std::{collections::BTreeMap, path::Path};

use serde::{Deserialize, Serialize};

use super::{
    RateLimit, RetrySchedule,
    signing::Scheme,
    target::{DenyList, parse_http_target, parse_script_target},
};
use crate::catalogue;

pub const NAME_MAX_CHARS: usize = 200;
pub const ORDERING_GROUP_MAX_CHARS: usize = 200;
pub const PRIORITY_MAX: i32 = 1_000_000;
pub const TIMEOUT_MS_MIN: i32 = 100;
pub const TIMEOUT_MS_MAX: i32 = 300_000;
pub const TIMEOUT_MS_DEFAULT: i32 = 10_000;

/// What a handler calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerType {
    Http,
    Script,
}

/// Whether a handler receives events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HandlerStatus {
    Enabled,
    Disabled,
    Archived,
    /// Its events go on making deliveries, in order; none is attempted until
    /// it is enabled again (DESIGN §8.1). Disabling still cancels.
    Paused,
}

text_enum!(HandlerType "handler type" { Http => "http", Script => "script" });
text_enum!(HandlerStatus "handler status" {
    Enabled => "enabled",
    Disabled => "disabled",
    Archived => "archived",
    Paused => "paused",
});

impl HandlerStatus {
    /// The status a click on the status icon leads to: enabled and disabled
    /// swap; an archived handler comes back disabled, so it starts nothing by surprise.
    /// A paused one resumes (a click never throws its backlog away).
    pub fn toggled(self) -> Self {
        match self {
            HandlerStatus::Enabled | HandlerStatus::Archived => HandlerStatus::Disabled,
            HandlerStatus::Disabled | HandlerStatus::Paused => HandlerStatus::Enabled,
        }
    }

    /// Whether its events make deliveries (enabled, or paused: kept for later).
    pub fn keeps_deliveries(self) -> bool {
        matches!(self, HandlerStatus::Enabled | HandlerStatus::Paused)
    }
}

/// The most attempts a handler's own retry schedule may give a delivery.
pub const RETRY_ATTEMPTS_MAX: u32 = 100;
/// The longest delay of a handler's own retry schedule.
pub const RETRY_DELAY_MAX: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// The handler form as submitted: raw text, kept as typed so an invalid form
/// can be shown again with every value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HandlerForm {
    pub name: String,
    pub events_id: String,
    #[serde(rename = "type")]
    pub handler_type: String,
    pub target: String,
    pub status: String,
    pub priority: String,
    pub timeout_ms: String,
    pub ordering_group: String,
    /// `v1` or `v1a` (see [`Scheme`]); blank keeps the handler's (a new one: `v1`).
    pub signature: String,
    /// Its own retry schedule (`5s,1m`, or `none`); blank: the global one.
    pub retry_schedule: String,
    /// Attempts per second at most (`50`, `0.5`); blank: no limit.
    pub rate_limit: String,
}

/// A handler that passed every rule, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidHandler {
    pub name: String,
    pub events_id: String,
    pub handler_type: HandlerType,
    pub target: String,
    pub status: HandlerStatus,
    pub priority: i32,
    pub timeout_ms: i32,
    /// Its ordering group (DESIGN §4.4); `None`: its target is.
    pub ordering_group: Option<String>,
    /// How its calls are signed; `None`: as they are (a new handler: `v1`).
    pub signature: Option<Scheme>,
    /// Its own retry schedule; `None`: the global one.
    pub retry_schedule: Option<RetrySchedule>,
    /// At most so many attempts a second; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
}

/// Messages by form field name (`name`, `events_id`, `type`, `target`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.entry(field.to_owned()).or_insert_with(|| message.into());
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The rule of every name (a handler's, a token's): 1 to `max` characters
    /// once trimmed, no control characters.
    pub fn check_name(&mut self, field: &str, name: &str, max: usize) {
        if name.is_empty() {
            self.add(field, "Enter a name");
        } else if name.chars().count() > max {
            self.add(field, format!("The name must be at most {max} characters"));
        } else if name.chars().any(char::is_control) {
            self.add(field, "The name must not contain control characters");
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl HandlerForm {
    /// Applies every rule of DESIGN §3.2; all failures are reported at once.
    pub fn validate(&self, scripts_dir: &Path, deny: &DenyList) -> Result<ValidHandler, FieldErrors> {
        let mut errors = FieldErrors::default();

        let name = self.name.trim();
        errors.check_name("name", name, NAME_MAX_CHARS);

        let event = catalogue::find(self.events_id.trim());
        if event.is_none() {
            errors.add("events_id", "Choose an event from the list");
        }

        let handler_type = self.handler_type.trim().parse::<HandlerType>().ok();
        let target = match handler_type {
            None => {
                errors.add("type", "Choose a handler type: http or script");
                None
            }
            Some(HandlerType::Http) => parse_http_target(&self.target, deny).map_err(|e| errors.add("target", e)).ok(),
            Some(HandlerType::Script) => {
                parse_script_target(&self.target, scripts_dir).map_err(|e| errors.add("target", e)).ok()
            }
        };

        let status = match self.status.trim() {
            "" => Some(HandlerStatus::Enabled),
            s => s.parse().ok(),
        };
        if status.is_none() {
            errors.add("status", "Choose a status: enabled, paused, disabled or archived");
        }

        let priority = match self.priority.trim() {
            "" => Some(0),
            p => p.parse::<i32>().ok().filter(|p| (0..=PRIORITY_MAX).contains(p)),
        };
        if priority.is_none() {
            errors.add("priority", format!("Enter a whole number from 0 to {PRIORITY_MAX}"));
        }

        let timeout_ms = match self.timeout_ms.trim() {
            "" => Some(TIMEOUT_MS_DEFAULT),
            t => t.parse::<i32>().ok().filter(|t| (TIMEOUT_MS_MIN..=TIMEOUT_MS_MAX).contains(t)),
        };
        if timeout_ms.is_none() {
            errors.add(
                "timeout_ms",
                format!("Enter a timeout in milliseconds from {TIMEOUT_MS_MIN} to {TIMEOUT_MS_MAX}"),
            );
        }

        let ordering_group = match self.ordering_group.trim() {
            "" => None,
            g if g.chars().count() > ORDERING_GROUP_MAX_CHARS => {
                errors.add(
                    "ordering_group",
                    format!("The ordering group must be at most {ORDERING_GROUP_MAX_CHARS} characters"),
                );
                None
            }
            g if g.chars().any(char::is_control) => {
                errors.add("ordering_group", "The ordering group must not contain control characters");
                None
            }
            g => Some(g.to_owned()),
        };

        let signature = match self.signature.trim() {
            "" => None,
            s => s.parse::<Scheme>().map_err(|e| errors.add("signature", e)).ok(),
        };

        let retry_schedule = parse_retry_schedule(&self.retry_schedule, &mut errors);

        let rate_limit = match self.rate_limit.trim() {
            "" => None,
            r => r.parse::<RateLimit>().map_err(|e| errors.add("rate_limit", e)).ok(),
        };

        match (event, handler_type, target, status, priority, timeout_ms) {
            (Some(event), Some(handler_type), Some(target), Some(status), Some(priority), Some(timeout_ms))
                if errors.is_empty() =>
            {
                Ok(ValidHandler {
                    name: name.to_owned(),
                    events_id: event.id.to_owned(),
                    handler_type,
                    target,
                    status,
                    priority,
                    timeout_ms,
                    ordering_group,
                    signature,
                    retry_schedule,
                    rate_limit,
                })
            }
            _ => Err(errors),
        }
    }
}

/// A handler's own retry schedule as typed: blank is `None` (the global
/// one), `none` never retries; at most [`RETRY_ATTEMPTS_MAX`] attempts, each
/// delay at most [`RETRY_DELAY_MAX`]. What is wrong goes to `errors`.
fn parse_retry_schedule(text: &str, errors: &mut FieldErrors) -> Option<RetrySchedule> {
    match text.trim() {
        "" => None,
        "none" => RetrySchedule::parse("").ok(),
        s => RetrySchedule::parse(s)
            .ok()
            .filter(|r| r.max_attempts() <= RETRY_ATTEMPTS_MAX && r.longest() <= RETRY_DELAY_MAX)
            .or_else(|| {
                errors.add(
                    "retry_schedule",
                    format!(
                        "Enter delays like 5s,30s,2m (at most {} of them, each at most 30d), none for no retry, or leave it blank for the global schedule",
                        RETRY_ATTEMPTS_MAX - 1
                    ),
                );
                None
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> HandlerForm {
        HandlerForm {
            name: "  CRM sync ".into(),
            events_id: "clients.create".into(),
            handler_type: "http".into(),
            target: "127.0.0.1:5000/api".into(),
            status: "enabled".into(),
            priority: "10".into(),
            timeout_ms: "".into(),
            ordering_group: "".into(),
            signature: "".into(),
            retry_schedule: "".into(),
            rate_limit: "".into(),
        }
    }

    fn errors_of(f: HandlerForm) -> FieldErrors {
        f.validate(Path::new("/nonexistent"), &DenyList::default()).unwrap_err()
    }

    #[test]
    fn a_good_form_is_normalised() {
        let v = form().validate(Path::new("/nonexistent"), &DenyList::default()).unwrap();
        assert_eq!(v.name, "CRM sync");
        assert_eq!(v.target, "http://127.0.0.1:5000/api");
        assert_eq!(v.timeout_ms, TIMEOUT_MS_DEFAULT);
        assert_eq!(v.status, HandlerStatus::Enabled);
        assert_eq!(v.priority, 10);
        let mut blank = form();
        blank.priority = " ".into();
        assert_eq!(blank.validate(Path::new("/"), &DenyList::default()).unwrap().priority, 0);
        assert_eq!(v.ordering_group, None, "blank: the target is the group");
        let mut grouped = form();
        grouped.ordering_group = "  crm ".into();
        assert_eq!(
            grouped.validate(Path::new("/"), &DenyList::default()).unwrap().ordering_group.as_deref(),
            Some("crm")
        );
    }

    #[test]
    fn each_rule_reports_on_its_field() {
        type Change = Box<dyn Fn(&mut HandlerForm)>;
        let cases: Vec<(&str, Change)> = vec![
            ("name", Box::new(|f| f.name = "   ".into())),
            ("name", Box::new(|f| f.name = "x".repeat(201))),
            ("events_id", Box::new(|f| f.events_id = "clients.explode".into())),
            ("type", Box::new(|f| f.handler_type = "ftp".into())),
            ("target", Box::new(|f| f.target = "ftp://x/y".into())),
            ("target", Box::new(|f| f.target = "".into())),
            ("status", Box::new(|f| f.status = "sleeping".into())),
            ("priority", Box::new(|f| f.priority = "-1".into())),
            ("priority", Box::new(|f| f.priority = "1000001".into())),
            ("priority", Box::new(|f| f.priority = "1.5".into())),
            ("timeout_ms", Box::new(|f| f.timeout_ms = "99".into())),
            ("timeout_ms", Box::new(|f| f.timeout_ms = "300001".into())),
            ("ordering_group", Box::new(|f| f.ordering_group = "g".repeat(201))),
            ("ordering_group", Box::new(|f| f.ordering_group = "crm\0".into())),
            ("retry_schedule", Box::new(|f| f.retry_schedule = "soon".into())),
            ("rate_limit", Box::new(|f| f.rate_limit = "0.05".into())),
            ("rate_limit", Box::new(|f| f.rate_limit = "fast".into())),
            ("retry_schedule", Box::new(|f| f.retry_schedule = "1s,31d".into())),
            ("retry_schedule", Box::new(|f| f.retry_schedule = vec!["1s"; 100].join(","))),
        ];
        for (field, change) in cases {
            let mut f = form();
            change(&mut f);
            let errors = errors_of(f.clone());
            assert!(errors.get(field).is_some(), "{field}: {f:?} gave {errors:?}");
            assert_eq!(errors.iter().count(), 1, "{errors:?}");
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let mut f = form();
        f.name = "é".repeat(200);
        f.priority = "1000000".into();
        f.timeout_ms = "100".into();
        f.ordering_group = "é".repeat(200);
        assert!(f.validate(Path::new("/"), &DenyList::default()).is_ok());
        f.priority = "0".into();
        f.timeout_ms = "300000".into();
        assert!(f.validate(Path::new("/"), &DenyList::default()).is_ok());
    }

    #[test]
    fn toggling_swaps_enabled_and_disabled() {
        assert_eq!(HandlerStatus::Enabled.toggled(), HandlerStatus::Disabled);
        assert_eq!(HandlerStatus::Disabled.toggled(), HandlerStatus::Enabled);
        assert_eq!(HandlerStatus::Archived.toggled(), HandlerStatus::Disabled);
        assert_eq!(HandlerStatus::Paused.toggled(), HandlerStatus::Enabled, "a click resumes, never cancels");
    }
}

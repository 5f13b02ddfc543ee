//! Pieces every page shares: the layout data, pagination, the grouped catalogue.

use crate::{
    catalogue,
    service::{Action, Actor},
    web::session::CurrentAdmin,
};

/// What `base.html` needs on every signed-in page.
pub struct Layout {
    pub title: String,
    pub csrf_token: String,
    pub flash: Option<String>,
    /// The section highlighted in the navigation.
    pub section: &'static str,
    /// Who is signed in, as the header shows it.
    pub username: String,
    pub role: &'static str,
    /// What the user may do: the pages offer only that (the use cases check it).
    pub may: Rights,
}

/// The rights of the signed-in user, for showing or hiding what they cannot do.
#[derive(Debug, Clone, Copy)]
pub struct Rights {
    pub edit_handlers: bool,
    pub change_status: bool,
    pub retry: bool,
    pub see_secrets: bool,
    pub rotate_secrets: bool,
    pub manage_users: bool,
    pub manage_tokens: bool,
}

impl Rights {
    pub fn of(actor: &Actor) -> Self {
        Self {
            edit_handlers: actor.may(Action::EditHandlers),
            change_status: actor.may(Action::ChangeStatus),
            retry: actor.may(Action::Retry),
            see_secrets: actor.may(Action::SeeSecrets),
            rotate_secrets: actor.may(Action::RotateSecrets),
            manage_users: actor.may(Action::ManageUsers),
            manage_tokens: actor.may(Action::ManageTokens),
        }
    }
}

impl Layout {
    pub fn new(admin: &CurrentAdmin, title: impl Into<String>, section: &'static str) -> Self {
        let (username, role) = match &admin.actor {
            Actor::User { name, role, .. } => (name.clone(), role.as_str()),
            Actor::Token { name, .. } => (name.clone(), "token"),
        };
        Self {
            title: title.into(),
            csrf_token: admin.csrf_token.clone(),
            flash: admin.flash.clone(),
            section,
            username,
            role,
            may: Rights::of(&admin.actor),
        }
    }
}

/// A number with its thousands grouped: `10,000`.
pub fn grouped(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && c.is_ascii_digit() && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Filters as a query string: the pairs whose value is not blank, trimmed.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let kept: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.trim())).filter(|(_, v)| !v.is_empty()).collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// `path?filters&key=value`: a link that keeps the filters.
pub fn link_with(path: &str, filters: &str, key: &str, value: i64) -> String {
    let sep = if filters.is_empty() { "" } else { "&" };
    format!("{path}?{filters}{sep}{key}={value}")
}

/// The events of the catalogue by group, for grouped selects.
pub struct EventGroup {
    pub name: &'static str,
    pub events: Vec<&'static catalogue::EventType>,
}

pub fn event_groups() -> Vec<EventGroup> {
    catalogue::GROUPS.iter().map(|g| EventGroup { name: g, events: catalogue::in_group(g).collect() }).collect()
}

/// How an event is shown in tables: `Clients: create`.
pub fn event_label(events_id: &str) -> String {
    catalogue::find(events_id).map_or_else(|| events_id.to_owned(), |e| format!("{}: {}", e.group, e.label))
}

/// One page of a list and links to its neighbours.
pub struct Pager {
    pub page: i64,
    pub per_page: i64,
    pub total: Option<i64>,
    pub shown: usize,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
}

impl Pager {
    pub const PER_PAGE: i64 = 50;

    /// `base_query` holds the filters (urlencoded, maybe empty); `has_more` says whether a next page exists.
    pub fn new(path: &str, base_query: &str, page: i64, total: Option<i64>, shown: usize, has_more: bool) -> Self {
        let link = |p: i64| {
            let sep = if base_query.is_empty() { "" } else { "&" };
            format!("{path}?{base_query}{sep}page={p}")
        };
        Self {
            page,
            per_page: Self::PER_PAGE,
            total,
            shown,
            prev_url: (page > 1).then(|| link(page - 1)),
            next_url: has_more.then(|| link(page + 1)),
        }
    }

    pub fn first_shown(&self) -> i64 {
        if self.shown == 0 { 0 } else { (self.page - 1) * self.per_page + 1 }
    }

    pub fn last_shown(&self) -> i64 {
        (self.page - 1) * self.per_page + self.shown as i64
    }

    /// The offset of a 1-based page number, clamped to sane values.
    pub fn offset(page: i64) -> i64 {
        (page.clamp(1, 1_000_000) - 1) * Self::PER_PAGE
    }
}

/// Reads a `page` parameter: blank is the first page; anything else must be a positive number.
pub fn parse_page(text: &str) -> Result<i64, String> {
    match text.trim() {
        "" => Ok(1),
        t => t
            .parse::<i64>()
            .ok()
            .filter(|p| (1..=1_000_000).contains(p))
            .ok_or_else(|| format!("`{t}` is not a page number")),
    }
}

/// A question asked before a change that cannot be taken back, as a page:
/// what the browser's confirmation says where JavaScript runs (which then
/// posts `confirm=yes` itself), for a browser without it.
#[derive(askama::Template)]
#[template(path = "confirm.html")]
pub struct ConfirmPage {
    pub layout: Layout,
    pub question: String,
    pub action: String,
    pub hidden: Vec<(&'static str, String)>,
    pub button: &'static str,
    /// `primary` or `danger`.
    pub button_class: &'static str,
    pub back: String,
}

/// A time as pages show it: UTC, to the second, labelled (a `<time
/// class="utc">` the browser may show in its own zone).
pub fn utc(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

//! The handler list (DESIGN §5): Find and the Advanced Search as GET
//! parameters, sorting by the columns, pages of 50, and each row's status,
//! health and backlog.

use actix_web::{HttpResponse, get, http::StatusCode, web};
use askama::Template;
use serde::Deserialize;

use super::{
    render,
    session::CurrentAdmin,
    views::{EventGroup, Layout, Pager, event_groups, event_label, parse_page},
};
use crate::{
    db::{
        handlers::{Handler, HandlerFilter, HandlerSort, SortColumn},
        logs::HandlerHealth,
    },
    domain::{HandlerStatus, HandlerType, Outcome},
    error::{AppError, AppResult},
    service::AppState,
};

/// The Advanced Search parameters, as typed in the URL.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ListQuery {
    event: String,
    #[serde(rename = "type")]
    handler_type: String,
    status: String,
    /// Text the name or the target contains.
    q: String,
    /// The column sorted by, and `dir=desc` for the other way.
    sort: String,
    dir: String,
    page: String,
}

impl ListQuery {
    fn filter(&self) -> Result<HandlerFilter, String> {
        let events_id = match self.event.trim() {
            "" => None,
            e if crate::catalogue::find(e).is_some() => Some(e.to_owned()),
            e => return Err(format!("There is no event `{e}` in the catalogue.")),
        };
        let handler_type = match self.handler_type.trim() {
            "" => None,
            t => {
                Some(t.parse::<HandlerType>().map_err(|_| format!("Unknown handler type `{t}`: use http or script."))?)
            }
        };
        let status = match self.status.trim() {
            "" => None,
            s => Some(
                s.parse::<HandlerStatus>()
                    .map_err(|_| format!("Unknown status `{s}`: use enabled, paused, disabled or archived."))?,
            ),
        };
        let sort = match self.sort.trim() {
            "" => SortColumn::default(),
            s => SortColumn::parse(s).ok_or_else(|| {
                format!("Unknown column `{s}`: sort by id, priority, name, event, type, target or status.")
            })?,
        };
        let sort = HandlerSort { column: sort, descending: self.dir.trim() == "desc" };
        let text = Some(self.q.trim().to_owned()).filter(|t| !t.is_empty());
        Ok(HandlerFilter { events_id, handler_type, status, text, sort })
    }

    /// The link that sorts the list by `column`: ascending, or the other way
    /// when it is sorted so already; the filters kept, back to page 1.
    pub fn sort_link(&self, column: &str) -> String {
        let descending = self.sort.trim() == column && self.dir.trim() != "desc";
        let mut pairs = self.filter_pairs();
        pairs.push(("sort", column));
        if descending {
            pairs.push(("dir", "desc"));
        }
        format!("/provisioning?{}", serde_urlencoded::to_string(pairs).unwrap_or_default())
    }

    /// `aria-sort` of a column's header.
    pub fn aria_sort(&self, column: &str) -> &'static str {
        let sorted = self.sort.trim();
        let current = if sorted.is_empty() { "priority" } else { sorted };
        match (current == column, self.dir.trim() == "desc") {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        }
    }

    fn filter_pairs(&self) -> Vec<(&str, &str)> {
        [("q", &self.q), ("event", &self.event), ("type", &self.handler_type), ("status", &self.status)]
            .into_iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| (k, v.trim()))
            .collect()
    }

    /// The filters and the order as a query string, without the page.
    fn filters_query(&self) -> String {
        let mut pairs = self.filter_pairs();
        for (k, v) in [("sort", &self.sort), ("dir", &self.dir)] {
            if !v.trim().is_empty() {
                pairs.push((k, v.trim()));
            }
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }
}

/// One row of the handler list.
pub struct HandlerRow {
    pub id: i64,
    pub priority: i32,
    pub name: String,
    pub events_id: String,
    pub event_label: String,
    pub handler_type: String,
    pub target: String,
    /// Set only when it is not the target (DESIGN §4.4).
    pub ordering_group: Option<String>,
    pub status: String,
    pub health: HealthView,
    /// An answer's `Retry-After` holds its attempts back until then.
    pub cooling_until: Option<String>,
    /// Its rate limit, in attempts a second (DESIGN §8.1).
    pub rate_limit: Option<String>,
}

impl From<Handler> for HandlerRow {
    fn from(h: Handler) -> Self {
        let cooling_until =
            h.cooling_down_until(crate::db::now()).map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        Self {
            cooling_until,
            rate_limit: h.rate_limit().map(|r| r.to_string()),
            event_label: event_label(&h.events_id),
            id: h.id,
            priority: h.priority,
            name: h.name,
            events_id: h.events_id,
            handler_type: h.handler_type.as_str().to_owned(),
            target: h.target,
            ordering_group: h.ordering_group,
            status: h.status.as_str().to_owned(),
            health: HealthView::from(HandlerHealth::default()),
        }
    }
}

/// The handler list's health column: last outcome, 24 h success rate, backlog, sparkline.
pub struct HealthView {
    pub last_outcome: Option<String>,
    pub last_ok: bool,
    pub last_at: String,
    pub attempts_24h: i64,
    pub success_rate: Option<i64>,
    pub failing: i64,
    pub pending: i64,
    /// The counts as shown: "12", "10,000+".
    pub failing_text: String,
    pub pending_text: String,
    /// Since when the oldest of its backlog has been due (a paused handler's).
    pub waiting_since: Option<String>,
    /// Bars of the attempts-per-hour sparkline: (x, y, height) in a 72×16 box.
    pub bars: Vec<(usize, i64, i64)>,
    pub peak: i64,
}

impl From<HandlerHealth> for HealthView {
    fn from(h: HandlerHealth) -> Self {
        let peak = h.per_hour.iter().copied().max().unwrap_or(0);
        let bars = h
            .per_hour
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| {
                let height = (n * 16 / peak.max(1)).max(1);
                (i * 3, 16 - height, height)
            })
            .collect();
        Self {
            last_ok: h.last_outcome == Some(Outcome::Success),
            last_outcome: h.last_outcome.map(|o| o.as_str().to_owned()),
            last_at: h.last_at.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default(),
            attempts_24h: h.attempts_24h,
            success_rate: (h.attempts_24h > 0).then(|| (h.successes_24h * 100 + h.attempts_24h / 2) / h.attempts_24h),
            failing: h.failing,
            pending: h.pending,
            failing_text: count_text(h.failing),
            pending_text: count_text(h.pending),
            waiting_since: h.oldest_due.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
            bars,
            peak,
        }
    }
}

/// A backlog count as the list shows it: exact up to the cap, "10,000+" above.
fn count_text(n: i64) -> String {
    let cap = crate::db::logs::BACKLOG_CAP;
    if n > cap { format!("{}+", super::views::grouped(cap)) } else { super::views::grouped(n) }
}

impl HandlerRow {
    /// What a click on the status icon does, for its tooltip and label.
    pub fn toggle_label(&self) -> &'static str {
        match self.status.as_str() {
            "enabled" => "Enabled — click to disable",
            "disabled" => "Disabled — click to enable",
            "paused" => "Paused — click to resume",
            _ => "Archived — click to restore as disabled",
        }
    }

    /// The status in words beside its dot: a colour alone says nothing to a
    /// screen reader or a colour-blind user.
    pub fn status_label(&self) -> &'static str {
        match self.status.as_str() {
            "enabled" => "Enabled",
            "disabled" => "Disabled",
            "paused" => "Paused",
            _ => "Archived",
        }
    }

    /// The target in pieces that may each end a line (after a `/`, `?` or
    /// `&`): a narrow screen wraps a URL between its parts, never inside
    /// `host:port`.
    pub fn target_parts(&self) -> Vec<&str> {
        self.target.split_inclusive(['/', '?', '&']).collect()
    }
}

/// A handler an operator should look at, for the banner above the list.
pub struct Trouble {
    pub id: i64,
    pub name: String,
    /// What is wrong, after the name.
    pub text: String,
}

impl From<Handler> for Trouble {
    fn from(h: Handler) -> Self {
        let at = |t: Option<chrono::NaiveDateTime>| t.map(super::views::utc);
        let text = match at(h.auto_disabled_at) {
            Some(when) if h.status == HandlerStatus::Disabled => {
                format!("was disabled automatically at {when}: every attempt had failed for too long")
            }
            _ => format!(
                "is failing: {} attempts in a row have failed{}",
                h.failures_in_a_row,
                at(h.failing_since).map(|t| format!(", since {t}")).unwrap_or_default()
            ),
        };
        Self { id: h.id, name: h.name, text }
    }
}

#[derive(Template)]
#[template(path = "handlers/list.html")]
pub struct HandlerListPage {
    pub layout: Layout,
    /// Handlers failing or disabled for failing (DESIGN §8.6).
    pub trouble: Vec<Trouble>,
    pub rows: Vec<HandlerRow>,
    pub event: String,
    pub handler_type: String,
    pub status: String,
    pub filtered: bool,
    pub return_to: String,
    pub pager: Pager,
    pub groups: Vec<EventGroup>,
    /// The query as given: the text filter, and the sort links of the headers.
    pub query: ListQuery,
}

#[get("/provisioning")]
pub async fn list_handlers(
    state: web::Data<AppState>,
    admin: CurrentAdmin,
    query: web::Query<ListQuery>,
) -> AppResult<HttpResponse> {
    let filter = query.filter().map_err(AppError::BadRequest)?;
    let page = parse_page(&query.page).map_err(AppError::BadRequest)?;
    let (rows, total, mut health, trouble) = state
        .db
        .read(move |conn| {
            let (rows, total) = Handler::list(conn, &filter, Pager::offset(page), Pager::PER_PAGE)?;
            let ids: Vec<i64> = rows.iter().map(|h| h.id).collect();
            let health = HandlerHealth::of(conn, &ids)?;
            Ok((rows, total, health, Handler::in_trouble(conn, 10)?))
        })
        .await?;
    let filters = query.filters_query();
    let has_more = Pager::offset(page) + (rows.len() as i64) < total;
    let pager = Pager::new("/provisioning", &filters, page, Some(total), rows.len(), has_more);
    let mut return_to = String::from("/provisioning");
    if !filters.is_empty() || page > 1 {
        return_to = format!("/provisioning?{filters}{}page={page}", if filters.is_empty() { "" } else { "&" });
    }
    render(
        StatusCode::OK,
        &HandlerListPage {
            layout: Layout::new(&admin, "Provisioning", "handlers"),
            trouble: trouble.into_iter().map(Trouble::from).collect(),
            rows: rows
                .into_iter()
                .map(|h| {
                    let figures = health.remove(&h.id).unwrap_or_default();
                    HandlerRow { health: HealthView::from(figures), ..HandlerRow::from(h) }
                })
                .collect(),
            event: query.event.trim().to_owned(),
            handler_type: query.handler_type.trim().to_owned(),
            status: query.status.trim().to_owned(),
            filtered: !query.filter_pairs().is_empty(),
            return_to,
            pager,
            groups: event_groups(),
            query: query.into_inner(),
        },
    )
}

//! The integrator's guide (`docs/HANDLERS.md`), compiled in and shown in the
//! UI, so the administrator can hand it on with the handler's secret.

use std::sync::LazyLock;

use actix_web::{HttpRequest, HttpResponse, get, http::StatusCode};
use askama::Template;
use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

use super::{render, session::CurrentAdmin, views::Layout};
use crate::error::AppResult;

#[derive(Template)]
#[template(path = "help.html")]
pub struct HelpPage {
    pub layout: Layout,
    /// The guide as HTML, rendered from the repository's own Markdown.
    pub body: &'static str,
}

static HANDLERS_GUIDE: LazyLock<String> = LazyLock::new(|| markdown_to_html(include_str!("../../docs/HANDLERS.md")));

#[get("/provisioning/help/handlers")]
pub async fn handlers_guide(admin: CurrentAdmin) -> AppResult<HttpResponse> {
    let layout = Layout::new(&admin, "Guide for integrators", "help");
    render(StatusCode::OK, &HelpPage { layout, body: HANDLERS_GUIDE.as_str() })
}

/// One event of the catalogue as the samples page shows it.
pub struct EventSample {
    pub id: &'static str,
    pub group: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub sample: String,
    pub curl: String,
}

#[derive(Template)]
#[template(path = "help_events.html")]
pub struct EventSamplesPage {
    pub layout: Layout,
    pub events: Vec<EventSample>,
    pub events_url: String,
}

/// Every event's sample payload, with a `curl` that posts it to this server.
#[get("/provisioning/help/events")]
pub async fn event_samples(admin: CurrentAdmin, req: HttpRequest) -> AppResult<HttpResponse> {
    let info = req.connection_info();
    let events_url = format!("{}://{}/api/v1/events", info.scheme(), info.host());
    let events = crate::catalogue::EVENTS
        .iter()
        .map(|e| {
            let pretty = serde_json::from_str::<serde_json::Value>(e.sample)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| e.sample.to_owned());
            let curl = format!(
                "curl -X POST '{events_url}' \\\n  -H \"Authorization: Bearer $PROVISIOND_TOKEN\" \\\n  -H 'Content-Type: application/json' \\\n  -d '{}'",
                e.sample.replace('\'', "'\\''")
            );
            EventSample {
                id: e.id,
                group: e.group,
                label: e.label,
                description: e.description,
                sample: pretty,
                curl,
            }
        })
        .collect();
    let layout = Layout::new(&admin, "Events and their samples", "help");
    render(StatusCode::OK, &EventSamplesPage { layout, events, events_url })
}

/// Markdown to HTML, each heading with the id GitHub gives it, so the
/// document's own `#links` work here as they do there.
fn markdown_to_html(markdown: &str) -> String {
    let mut events: Vec<Event> = Parser::new_ext(markdown, Options::ENABLE_TABLES).collect();
    let mut i = 0;
    while i < events.len() {
        if let Event::Start(Tag::Heading { id: None, .. }) = &events[i] {
            let mut text = String::new();
            for event in &events[i + 1..] {
                match event {
                    Event::End(TagEnd::Heading(_)) => break,
                    Event::Text(t) | Event::Code(t) => text.push_str(t),
                    _ => {}
                }
            }
            if let Event::Start(Tag::Heading { id, .. }) = &mut events[i] {
                *id = Some(CowStr::from(slug(&text)));
            }
        }
        i += 1;
    }
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events.into_iter());
    out
}

/// GitHub's anchor of a heading: lower case, spaces to hyphens, other
/// punctuation dropped.
fn slug(text: &str) -> String {
    text.trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_get_the_anchors_the_document_links_to() {
        let html =
            markdown_to_html("See [below](#de-duplicating-by-webhook-id).\n\n## De-duplicating by `webhook-id`\n");
        assert!(html.contains(r#"<h2 id="de-duplicating-by-webhook-id">"#), "{html}");
    }

    #[test]
    fn every_link_inside_the_guide_has_its_heading() {
        let html = HANDLERS_GUIDE.as_str();
        for anchor in html.split("href=\"#").skip(1).map(|rest| rest.split('"').next().unwrap_or_default()) {
            assert!(html.contains(&format!("id=\"{anchor}\"")), "#{anchor} has no heading");
        }
    }
}

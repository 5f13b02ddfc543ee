//! How the dispatcher shares out work between handlers: a handler never has
//! more attempts at once than its limit, and one with a backlog at its limit
//! does not hold up the others.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Received, Sink},
};

on_both_backends!(a_handler_with_a_backlog_gets_its_limit_at_once_and_holds_up_no_other);

/// The most requests the sink was answering at the same moment.
fn most_at_once(received: &[Received]) -> usize {
    let mut edges: Vec<(tokio::time::Instant, i32)> =
        received.iter().flat_map(|r| [(r.started, 1), (r.ended, -1)]).collect();
    // At the same instant, an answer leaves before the next request counts.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in edges {
        now += step;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}

async fn a_handler_with_a_backlog_gets_its_limit_at_once_and_holds_up_no_other(db: TestDb) {
    const LIMIT: usize = 3;
    const BACKLOG: usize = 24;
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.handler_concurrency = LIMIT).await;
    let sink = Sink::start().await;
    sink.behave("/slow", Behavior { delay: Duration::from_millis(150), ..Behavior::default() });
    app.create_handler(http_handler("slow", "clients.update", &sink.url("/slow"), 1)).await;
    app.create_handler(http_handler("fast", "clients.create", &sink.url("/fast"), 1)).await;

    // A backlog of updates (one object each, so all may go at once), then
    // creates. Two updates start first and the rest a moment later, so their
    // attempts end at different times: the handler has room for fewer than
    // its limit at some claims.
    for n in 0..BACKLOG {
        if n == 2 {
            sink.wait_arrivals(2, Duration::from_secs(10)).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        let (status, _) = app.post_event(&envelope("clients.update", json!(n), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    for n in 0..8 {
        let (status, _) = app.post_event(&envelope("clients.create", json!(1000 + n), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }

    let fast = sink.wait_for("/fast", 8, Duration::from_secs(10)).await;
    let slow_then = sink.received_on("/slow").len();
    assert!(
        slow_then < BACKLOG,
        "the other handler waited for the whole backlog ({slow_then} of {BACKLOG} delivered before it was done)"
    );
    let slow = sink.wait_for("/slow", BACKLOG, Duration::from_secs(20)).await;
    assert_eq!(most_at_once(&slow), LIMIT, "the slow handler gets exactly its limit of attempts at once");
    let mut seen: Vec<i64> = slow.iter().map(|r| r.json()["data"]["n"].as_i64().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..BACKLOG as i64).collect::<Vec<_>>(), "each event of the backlog once");
    assert_eq!(fast.len(), 8);
}

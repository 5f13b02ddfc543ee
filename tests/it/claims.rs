//! How the dispatcher shares out work between handlers: a handler never has
//! more attempts at once than its limit, and one with a backlog at its limit
//! does not hold up the others; the handlers after a hung one in a chain wait
//! without a due time (parked), and go in turn.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Received, Sink},
};

on_both_backends!(
    a_handler_with_a_backlog_gets_its_limit_at_once_and_holds_up_no_other,
    the_handlers_after_a_hung_one_wait_unscheduled_and_go_in_turn,
    a_chain_whose_turn_came_unseen_goes_at_the_next_start
);

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

/// The API's view of the deliveries of event `id`, in the chain's order:
/// `(state, next_attempt_at)`; one with no `next_attempt_at` while pending
/// says what it waits for.
async fn chain_of(app: &TestApp, id: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let event = app.api_json(&format!("/api/v1/events/{id}")).await;
    event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let state = d["state"].as_str().unwrap().to_owned();
            let waits = state == "pending" && d["next_attempt_at"].is_null();
            assert_eq!(d["waiting_for"].as_str().is_some(), waits, "{d}");
            (state, d["next_attempt_at"].clone())
        })
        .collect()
}

async fn the_handlers_after_a_hung_one_wait_unscheduled_and_go_in_turn(db: TestDb) {
    const LIMIT: usize = 2;
    const EVENTS: i64 = 4;
    // No sweep (PostgreSQL's comes with the lease renewal): what goes, goes
    // because the head's recorded attempt made it due.
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| {
        s.handler_concurrency = LIMIT;
        s.lease = Duration::from_secs(3 * 3600);
    })
    .await;
    let sink = Sink::start().await;
    // The head of the chain answers after a long while: a backlog at its limit.
    sink.behave("/head", Behavior { delay: Duration::from_millis(1500), ..Behavior::default() });
    let mut head = http_handler("head", "clients.update", &sink.url("/head"), 1);
    head["timeout_ms"] = json!(20_000);
    app.create_handler(head).await;
    app.create_handler(http_handler("next", "clients.update", &sink.url("/next"), 2)).await;
    app.create_handler(http_handler("other", "clients.create", &sink.url("/other"), 1)).await;
    let mut last = serde_json::Value::Null;
    for n in 0..EVENTS {
        let (status, answer) = app.post_event(&envelope("clients.update", json!(n), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        last = answer["id"].clone();
    }
    sink.wait_arrivals(LIMIT, Duration::from_secs(10)).await;
    // The last event waits at the head for room (due now), and after it in
    // the chain with no time set: it is not due until the head's attempt ends.
    let chain = chain_of(&app, &last).await;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[0].0, "pending");
    assert!(chain[0].1.is_string(), "the head's delivery is due: {chain:?}");
    assert_eq!(chain[1], ("pending".to_owned(), serde_json::Value::Null), "the next one waits unscheduled");
    // Another event's handler is not held up meanwhile.
    for n in 0..3 {
        let (status, _) = app.post_event(&envelope("clients.create", json!(100 + n), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    sink.wait_for("/other", 3, Duration::from_secs(10)).await;

    // As the head answers, each event's next handler goes, after its head.
    let next = sink.wait_for("/next", EVENTS as usize, Duration::from_secs(20)).await;
    let heads = sink.received_on("/head");
    let n = |r: &Received| r.json()["data"]["n"].as_i64().unwrap();
    for r in &next {
        let head = heads.iter().find(|h| n(h) == n(r)).expect("the head had the event first");
        assert!(r.started >= head.ended, "event {}: the next handler went before the head's answer", n(r));
    }
    let mut seen: Vec<i64> = next.iter().map(n).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..EVENTS).collect::<Vec<_>>());
    let done = app
        .api_until(&format!("/api/v1/events/{last}"), "the chain done", |e| {
            e["deliveries"].as_array().is_some_and(|d| d.iter().all(|d| d["state"] == "succeeded"))
        })
        .await;
    assert_eq!(done["deliveries"].as_array().unwrap().len(), 2);
}

/// Another process (PostgreSQL) may end the head's first attempt while this
/// one cancels the next handler's: each sees the other's delivery as still
/// waiting, and neither makes the third one due. A start (and, on PostgreSQL,
/// every lease renewal) looks for such deliveries.
async fn a_chain_whose_turn_came_unseen_goes_at_the_next_start(db: TestDb) {
    let no_sweep = |s: &mut provisiond::config::Settings| {
        s.poll_interval = Duration::from_secs(3600);
        s.lease = Duration::from_secs(3 * 3600);
        s.shutdown_grace = Duration::from_millis(200);
    };
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), no_sweep).await;
    let sink = Sink::start().await;
    let stuck = crate::wakes::stuck_chain(&app, &sink).await;
    let (status, answer) = app.post_event(&envelope("clients.update", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sink.wait_arrivals(1, Duration::from_secs(10)).await;
    assert_eq!(chain_of(&app, &answer["id"]).await[1], ("pending".to_owned(), serde_json::Value::Null));
    let db = app.stopped().await;

    // The head's attempt ended elsewhere, without the next one made due.
    let head = stuck["id"].as_i64().unwrap();
    let ended = db.raw_sql(&format!(
        "UPDATE deliveries SET state = 'succeeded', attempts = 1, first_attempt_done = TRUE,
             lease_owner = NULL, lease_until = NULL
         WHERE handler_id = {head}"
    ));
    assert_eq!(ended, 1);

    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), no_sweep).await;
    sink.wait_for("/next", 1, Duration::from_secs(10)).await;
    let chain = chain_of(&app, &answer["id"]).await;
    assert_eq!(chain[0].0, "succeeded");
}

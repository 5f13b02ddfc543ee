//! The dispatcher is woken by what makes work claimable, not by a sweep: with
//! the periodic sweep and the lease renewal an hour apart, every delivery that
//! waits on something (room, its object's previous event, its event's chain,
//! a retry's delay) still goes as soon as it may.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    deliveries_that_wait_go_when_woken_without_a_sweep,
    deleting_a_handler_that_holds_up_a_chain_lets_the_rest_go_at_once,
    disabling_a_handler_that_holds_up_a_chain_lets_the_rest_go_at_once,
    disabling_the_middle_of_a_chain_leaves_the_rest_waiting_for_the_head
);

const WAIT: Duration = Duration::from_secs(10);

/// A server whose sweep and lease renewal are an hour apart.
async fn without_a_sweep(db: TestDb, handler_concurrency: usize) -> TestApp {
    TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| {
        s.poll_interval = Duration::from_secs(3600);
        s.lease = Duration::from_secs(3 * 3600);
        s.handler_concurrency = handler_concurrency;
    })
    .await
}

async fn deliveries_that_wait_go_when_woken_without_a_sweep(db: TestDb) {
    // One attempt at a time per handler: the second object waits for room.
    let app = without_a_sweep(db, 1).await;
    let sink = Sink::start().await;
    let slow = Behavior { delay: Duration::from_millis(150), ..Behavior::default() };
    sink.behave("/first", Behavior { statuses: [500].into(), ..slow.clone() });
    sink.behave("/second", slow);
    app.create_handler(http_handler("first", "clients.update", &sink.url("/first"), 1)).await;
    app.create_handler(http_handler("second", "clients.update", &sink.url("/second"), 2)).await;

    // Object 1 twice (the second waits for the first), object 2 once (waits
    // for room); at /second each waits for /first (the chain); /first fails
    // its first attempt (a retry 100 ms later).
    for (object, n) in [(1, 1), (1, 2), (2, 3)] {
        let (status, _) = app.post_event(&envelope("clients.update", json!(object), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let first = sink.wait_for("/first", 4, WAIT).await;
    let second = sink.wait_for("/second", 3, WAIT).await;
    let n = |r: &crate::sink::Received| r.json()["data"]["n"].as_i64().unwrap();
    let first: Vec<(i64, u16)> = first.iter().map(|r| (n(r), r.status)).collect();
    let object1: Vec<(i64, u16)> = first.iter().copied().filter(|(n, _)| *n != 3).collect();
    assert_eq!(object1, [(1, 500), (1, 200), (2, 200)], "object 1 in order, the second after the retry: {first:?}");
    assert!(first.contains(&(3, 200)), "object 2: {first:?}");
    let mut second: Vec<i64> = second.iter().map(n).collect();
    second.sort_unstable();
    assert_eq!(second, [1, 2, 3]);
}

/// Two handlers of one chain on `clients.update`: "stuck" (at `/stuck`, which
/// answers after a minute) then "next" (at `/next`). Returns the first.
pub async fn stuck_chain(app: &TestApp, sink: &Sink) -> serde_json::Value {
    sink.behave("/stuck", Behavior { delay: Duration::from_secs(60), ..Behavior::default() });
    let mut stuck = http_handler("stuck", "clients.update", &sink.url("/stuck"), 1);
    stuck["timeout_ms"] = json!(60_000);
    let stuck = app.create_handler(stuck).await;
    app.create_handler(http_handler("next", "clients.update", &sink.url("/next"), 2)).await;
    stuck
}

async fn deleting_a_handler_that_holds_up_a_chain_lets_the_rest_go_at_once(db: TestDb) {
    let app = without_a_sweep(db, 8).await;
    let sink = Sink::start().await;
    let stuck = stuck_chain(&app, &sink).await;
    let (status, _) = app.post_event(&envelope("clients.update", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sink.wait_arrivals(1, WAIT).await;
    assert!(sink.received_on("/next").is_empty(), "the chain waits for the first handler");
    let res = app.api(reqwest::Method::DELETE, &format!("/api/v1/handlers/{}", stuck["id"])).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    sink.wait_for("/next", 1, WAIT).await;
}

async fn disabling_a_handler_that_holds_up_a_chain_lets_the_rest_go_at_once(db: TestDb) {
    let app = without_a_sweep(db, 1).await;
    let sink = Sink::start().await;
    // One attempt at a time: the first event's attempt at /stuck holds the
    // second event's, and the chain of both.
    let stuck = stuck_chain(&app, &sink).await;
    for n in [1, 2] {
        let (status, _) = app.post_event(&envelope("clients.update", json!(n), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    sink.wait_arrivals(1, WAIT).await;
    assert!(sink.received_on("/next").is_empty(), "the chain waits for the first handler");
    let res = app
        .api(reqwest::Method::PATCH, &format!("/api/v1/handlers/{}", stuck["id"]))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The second event's waiting attempt is cancelled: its chain goes on at
    // once; the first's goes on when the attempt in flight ends.
    let next = sink.wait_for("/next", 1, WAIT).await;
    assert_eq!(next[0].json()["data"]["n"], 2);
}

async fn disabling_the_middle_of_a_chain_leaves_the_rest_waiting_for_the_head(db: TestDb) {
    let app = without_a_sweep(db, 8).await;
    let sink = Sink::start().await;
    sink.behave("/head", Behavior { delay: Duration::from_millis(800), ..Behavior::default() });
    app.create_handler(http_handler("head", "clients.update", &sink.url("/head"), 1)).await;
    let middle = app.create_handler(http_handler("middle", "clients.update", &sink.url("/middle"), 2)).await;
    app.create_handler(http_handler("last", "clients.update", &sink.url("/last"), 3)).await;
    let (status, answer) = app.post_event(&envelope("clients.update", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sink.wait_arrivals(1, WAIT).await;
    let res = app
        .api(reqwest::Method::PATCH, &format!("/api/v1/handlers/{}", middle["id"]))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // The middle one is cancelled; the last still waits for the head.
    let event = app.api_json(&format!("/api/v1/events/{}", answer["id"])).await;
    let states: Vec<(&str, &serde_json::Value)> = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["state"].as_str().unwrap(), &d["next_attempt_at"]))
        .collect();
    assert_eq!(states[1].0, "cancelled");
    assert_eq!(states[2], ("pending", &serde_json::Value::Null), "the last waits for the head: {states:?}");
    // Once the head's attempt is recorded, the last goes, after it.
    let last = sink.wait_for("/last", 1, WAIT).await;
    let head = sink.received_on("/head");
    assert!(last[0].started >= head[0].ended, "the last went before the head's answer");
    assert!(sink.received_on("/middle").is_empty(), "the cancelled one never went");
}

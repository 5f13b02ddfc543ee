//! `POST /api/v1/events`: what is refused, idempotency, group commit and the counters.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::Sink,
};

on_both_backends!(
    bad_events_are_refused_with_a_reason_and_store_nothing,
    an_idempotency_key_returns_the_first_answer,
    events_posted_at_once_each_get_their_own_answer,
    metrics_count_what_was_ingested_and_delivered
);

async fn bad_events_are_refused_with_a_reason_and_store_nothing(db: TestDb) {
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.max_body_bytes = 2048).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("h", "clients.create", &sink.url("/h"), 1)).await;
    let post = |body: String| {
        app.api(Method::POST, "/api/v1/events").header("content-type", "application/json").body(body).send()
    };
    let cases: Vec<(String, StatusCode, &str)> = vec![
        ("{\"event\": ".into(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("".into(), StatusCode::BAD_REQUEST, "not valid JSON"),
        ("[1]".into(), StatusCode::UNPROCESSABLE_ENTITY, "must be a JSON object"),
        (
            json!({"event": {"events_id": "clients.explode", "object_id": 1}, "data": {}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown events_id `clients.explode`",
        ),
        (
            json!({"event": {"events_id": "clients.create", "object_id": 1}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `data`",
        ),
        (
            json!({"event": {"object_id": 1}, "data": {}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `event.events_id`",
        ),
        (
            json!({"event": {"events_id": "clients.create"}, "data": {}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `event.object_id`",
        ),
        (json!({"data": {}}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "missing field `event`"),
        (
            json!({"event": {"events_id": "clients.create", "object_id": 1, "dt": "soon"}, "data": {}}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not an ISO-8601",
        ),
        (
            envelope("clients.create", json!(1), json!({"blob": "x".repeat(3000)})).to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than 2048 bytes",
        ),
    ];
    for (body, status, message) in cases {
        let res = post(body.clone()).await.unwrap();
        assert_eq!(res.status(), status, "{body:.80}");
        let err: Value = res.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains(message), "{body:.80}: {err}");
    }
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/events"))
        .json(&envelope("clients.create", json!(1), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .api(Method::POST, "/api/v1/events")
        .header("idempotency-key", "")
        .json(&envelope("clients.create", json!(1), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "an empty Idempotency-Key");
    let res = app.api(Method::GET, "/api/v1/events/1").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "no bad input stored an event");
    // A good one still goes through, and is the first event.
    let (status, answer) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    assert_eq!((status, answer["id"].as_i64()), (StatusCode::ACCEPTED, Some(1)));
    sink.wait_for("/h", 1, std::time::Duration::from_secs(10)).await;
}

async fn an_idempotency_key_returns_the_first_answer(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("h", "clients.create", &sink.url("/h"), 1)).await;
    let send = |key: &'static str, object: i64| {
        app.api(Method::POST, "/api/v1/events")
            .header("idempotency-key", key)
            .json(&envelope("clients.create", json!(object), json!({})))
            .send()
    };
    let first: Value = send("order-1", 1).await.unwrap().json().await.unwrap();
    let again = send("order-1", 1).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.json::<Value>().await.unwrap(), first, "the same answer");
    // Concurrent repeats also give one event.
    let answers = futures_util::future::join_all((0..8).map(|_| send("order-2", 2))).await;
    let ids: Vec<i64> = futures_util::future::join_all(
        answers.into_iter().map(|r| async { r.unwrap().json::<Value>().await.unwrap()["id"].as_i64().unwrap() }),
    )
    .await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let other: Value = send("order-3", 3).await.unwrap().json().await.unwrap();
    assert_ne!(other["id"], first["id"]);
    sink.wait_for("/h", 3, std::time::Duration::from_secs(10)).await;
    // Nothing is left unfinished, so no other delivery can follow.
    app.settled().await;
    assert_eq!(sink.received_on("/h").len(), 3, "one delivery per distinct key");
}

/// Many events at once are stored in shared commits: each answer still names
/// its own event, with its own number of deliveries.
async fn events_posted_at_once_each_get_their_own_answer(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("a", "clients.create", &sink.url("/a"), 1)).await;
    app.create_handler(http_handler("b", "clients.create", &sink.url("/b"), 2)).await;
    app.create_handler(http_handler("c", "clients.update", &sink.url("/c"), 1)).await;
    let event_of = |n: i64| match n % 3 {
        0 => ("clients.create", 2),
        1 => ("clients.update", 1),
        _ => ("clients.delete", 0),
    };
    let app = &app;
    let answers = futures_util::future::join_all((0..90).map(|n| async move {
        let (events_id, deliveries) = event_of(n);
        let (status, body) = app.post_event(&envelope(events_id, json!(n), json!({ "n": n }))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["deliveries"], deliveries, "event {n}: {body}");
        (n, body["id"].as_i64().unwrap())
    }))
    .await;
    let mut ids: Vec<i64> = answers.iter().map(|(_, id)| *id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 90, "one event each");
    for (n, id) in answers {
        let stored = app.api_json(&format!("/api/v1/events/{id}")).await;
        assert_eq!(stored["events_id"], event_of(n).0, "event {n} is stored as event {id}");
        assert_eq!(stored["payload"]["data"]["n"], n, "event {n} is stored as event {id}");
        assert_eq!(stored["deliveries"].as_array().unwrap().len() as i64, event_of(n).1);
    }
}

/// `/metrics` (with a read token) counts what was done; on SQLite it also counts the
/// writer's transactions and the writes in them: every batch of ingestion,
/// claims and records is one of those writes, and writes share transactions
/// (never more transactions than writes).
async fn metrics_count_what_was_ingested_and_delivered(db: TestDb) {
    let sqlite = db.url.starts_with("sqlite");
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("a", "clients.create", &sink.url("/a"), 1)).await;
    let app = &app;
    futures_util::future::join_all((0..30).map(|n| async move {
        let (status, body) = app.post_event(&envelope("clients.create", json!(n), json!({ "n": n }))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }))
    .await;
    let metric = |text: &str, name: &str| -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let text = loop {
        let res = app.api(reqwest::Method::GET, "/metrics").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.text().await.unwrap();
        // Attempts are counted as their recording starts; the backlog falls once it commits.
        let success = metric(&text, "provisiond_attempts_total{outcome=\"success\"}");
        if success == Some(30.0) && metric(&text, "provisiond_deliveries_unfinished") == Some(0.0) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "30 recorded successes never counted:\n{text}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    assert_eq!(sink.received_on("/a").len(), 30);
    assert_eq!(metric(&text, "provisiond_events_ingested_total"), Some(30.0), "{text}");
    assert_eq!(metric(&text, "provisiond_deliveries_created_total"), Some(30.0), "{text}");
    assert_eq!(metric(&text, "provisiond_claimed_total"), Some(30.0), "{text}");
    // Claims take time; a second per claim would be a planner gone astray.
    let claims = metric(&text, "provisiond_claims_total").unwrap_or(0.0);
    let claim_seconds = metric(&text, "provisiond_claim_seconds_total").expect("the claims' time is reported");
    assert!(claim_seconds > 0.0 && claim_seconds < claims, "{claim_seconds} s for {claims} claims:\n{text}");
    let batches: f64 =
        ["provisiond_ingest_commits_total", "provisiond_claims_total", "provisiond_record_commits_total"]
            .iter()
            .map(|name| metric(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}")))
            .sum();
    let writer =
        (metric(&text, "provisiond_sqlite_write_commits_total"), metric(&text, "provisiond_sqlite_writes_total"));
    match writer {
        (Some(commits), Some(writes)) if sqlite => {
            assert!(writes >= batches, "{writes} writes, {batches} batches");
            assert!((1.0..=writes).contains(&commits), "{commits} commits, {writes} writes");
        }
        (None, None) if !sqlite => {}
        other => panic!("SQLite writer figures {other:?} on {}", if sqlite { "SQLite" } else { "PostgreSQL" }),
    }
}

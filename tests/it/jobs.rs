//! Bulk retry and replay (DESIGN §8.5): the count first (a dry run), then a
//! job in the database that runs in the background, in per-object order,
//! survives a restart and can be cancelled; in the API and the browser.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb, flash_of},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    a_bulk_retry_counts_then_retries_every_failed_delivery_in_per_object_order,
    a_bulk_retry_in_the_browser_asks_with_the_count_and_shows_its_progress,
    a_started_job_is_finished_after_a_restart,
    a_replay_delivers_past_events_to_a_new_handler,
    a_running_job_can_be_cancelled,
);

async fn post_json(app: &TestApp, path: &str, body: Value) -> (StatusCode, Value) {
    let res = app.api(Method::POST, path).json(&body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits until job `id` is no longer running; returns it.
async fn finished_job(app: &TestApp, id: &Value) -> Value {
    app.api_until(&format!("/api/v1/jobs/{id}"), "the job to end", |j| j["state"] != "running").await
}

fn failed_deliveries(list: &Value) -> usize {
    list["deliveries"].as_array().unwrap().iter().filter(|d| d["state"] == "failed").count()
}

/// Object ids of the requests received, in the order they arrived, with the event's data.
fn arrivals(sink: &Sink, path: &str) -> Vec<(String, i64)> {
    sink.received_on(path)
        .iter()
        .map(|r| {
            let body = r.json();
            (body["event"]["object_id"].to_string(), body["data"]["n"].as_i64().unwrap())
        })
        .collect()
}

async fn a_bulk_retry_counts_then_retries_every_failed_delivery_in_per_object_order(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    // An outage: the endpoint answers 503 to the first 6 attempts.
    sink.behave("/crm", Behavior { statuses: [503; 6].into(), ..Behavior::default() });
    let crm = app.create_handler(http_handler("crm", "clients.update", &sink.url("/crm"), 1)).await;
    let _other = app.create_handler(http_handler("other", "clients.delete", &sink.url("/other"), 1)).await;
    for n in 0..6 {
        let object = json!(n % 3);
        app.post_event(&envelope("clients.update", object, json!({"n": n}))).await;
    }
    app.post_event(&envelope("clients.delete", json!(1), json!({"n": 99}))).await;
    let path = format!("/api/v1/deliveries?handler_id={}", crm["id"]);
    app.api_until(&path, "six failures for good", |l| failed_deliveries(l) == 6).await;

    // The count first: nothing changes.
    let filter = json!({"handler_id": crm["id"], "state": "failed", "dry_run": true});
    let (status, dry) = post_json(&app, "/api/v1/deliveries/retry", filter).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry, json!({"dry_run": true, "matched": 6, "succeeded": 0}));
    assert_eq!(failed_deliveries(&app.api_json(&path).await), 6, "a dry run retries nothing");
    let jobs = app.api_json("/api/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "a dry run starts no job");

    // Then for real.
    let (status, started) = post_json(
        &app,
        "/api/v1/deliveries/retry",
        json!({"handler_id": crm["id"], "state": "failed", "dry_run": false}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["matched"], 6);
    assert_eq!(started["job"]["kind"], "retry");
    let job = finished_job(&app, &started["job"]["id"]).await;
    assert_eq!((job["state"].as_str(), job["done"].as_i64()), (Some("done"), Some(6)), "{job}");
    let list = app
        .api_until(&path, "every delivery succeeded", |l| {
            l["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "succeeded")
        })
        .await;
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 6);
    // The endpoint got each object's events again in the order they were made.
    let again: Vec<(String, i64)> = arrivals(&sink, "/crm").into_iter().skip(6).collect();
    assert_eq!(again.len(), 6, "{again:?}");
    for object in ["0", "1", "2"] {
        let order: Vec<i64> = again.iter().filter(|(o, _)| o == object).map(|(_, n)| *n).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "object {object}'s events in order: {again:?}");
    }
    assert_eq!(sink.received_on("/other").len(), 1, "the other handler's delivery is not retried");

    // Audited; a filter that does not read is a 422 naming the field; a read token may not.
    let audit = app.api_json("/api/v1/audit?action=deliveries.").await;
    assert_eq!(audit["entries"][0]["action"], "deliveries.bulk_retry", "{audit}");
    let (status, bad) = post_json(&app, "/api/v1/deliveries/retry", json!({"state": "sideways"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad["errors"]["state"].is_string(), "{bad}");
    let (status, bad) = post_json(&app, "/api/v1/deliveries/retry", json!({"dry_run": "yes"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    let (status, _) = post_json(&app, "/api/v1/jobs/999999/cancel", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn a_bulk_retry_in_the_browser_asks_with_the_count_and_shows_its_progress(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/crm", Behavior { statuses: [500; 3].into(), ..Behavior::default() });
    let crm = app.create_handler(http_handler("crm", "clients.update", &sink.url("/crm"), 1)).await;
    for n in 0..3 {
        app.post_event(&envelope("clients.update", json!(n), json!({"n": n}))).await;
    }
    let path = format!("/api/v1/deliveries?handler_id={}", crm["id"]);
    app.api_until(&path, "three failures", |l| failed_deliveries(l) == 3).await;
    let csrf = app.sign_in().await;
    let list = app.get_page(&format!("/provisioning/deliveries?state=failed&handler_id={}", crm["id"])).await;
    assert!(list.contains(r#"action="/provisioning/deliveries/retry""#), "Retry these… offered");
    assert!(list.contains(r#"<input type="hidden" name="state" value="failed">"#), "with the filter");

    let handler_id = crm["id"].to_string();
    let fields = [("csrf_token", csrf.as_str()), ("state", "failed"), ("handler_id", handler_id.as_str())];
    let res = app.post_form("/provisioning/deliveries/retry", &fields).await;
    assert_eq!(res.status(), StatusCode::OK, "the count, not the retry");
    let confirm = res.text().await.unwrap();
    assert!(confirm.contains("<strong>3</strong> deliveries match these filters"), "{confirm}");
    assert!(confirm.contains("Retry these 3"));
    assert_eq!(failed_deliveries(&app.api_json(&path).await), 3, "nothing retried before the confirmation");

    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let res = app.post_form("/provisioning/deliveries/retry", &confirmed).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let job_page = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(job_page.starts_with("/provisioning/jobs/"), "{job_page}");
    let page = app.get_page(&job_page).await;
    assert!(flash_of(&page).unwrap().contains("started"), "{page}");
    assert!(page.contains("id=\"job-progress\""));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = app.get_page(&job_page).await;
        if page.contains(">Done<") {
            break page;
        }
        assert!(page.contains("http-equiv=\"refresh\""), "a running job's page refreshes itself");
        assert!(std::time::Instant::now() < deadline, "the job did not end: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(page.contains("<strong>3</strong> of <strong>3</strong> deliveries queued again"), "{page}");
    assert!(!page.contains("http-equiv=\"refresh\""), "a finished job's page stays still");
    app.api_until(&path, "every delivery succeeded", |l| {
        l["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "succeeded")
    })
    .await;
    assert!(app.get_page("/provisioning/jobs").await.contains(&job_page));

    // A filter that matches nothing says so and offers no button; a bad one is a 400.
    let none = [("csrf_token", csrf.as_str()), ("state", "failed")];
    let page = app.post_form("/provisioning/deliveries/retry", &none).await.text().await.unwrap();
    assert!(page.contains("Nothing to do"), "{page}");
    assert!(!page.contains("Retry these 0"));
    let bad = [("csrf_token", csrf.as_str()), ("from", "yesterday-ish")];
    assert_eq!(app.post_form("/provisioning/deliveries/retry", &bad).await.status(), StatusCode::BAD_REQUEST);
}

async fn a_started_job_is_finished_after_a_restart(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/crm", Behavior { statuses: [500; 4].into(), ..Behavior::default() });
    let crm = app.create_handler(http_handler("crm", "clients.update", &sink.url("/crm"), 1)).await;
    for n in 0..4 {
        app.post_event(&envelope("clients.update", json!(n), json!({"n": n}))).await;
    }
    let path = format!("/api/v1/deliveries?handler_id={}", crm["id"]);
    app.api_until(&path, "four failures", |l| failed_deliveries(l) == 4).await;
    let db = app.stopped().await;
    // A job the last process started and did not get to: it is in the database.
    db.raw_sql(&format!(
        "INSERT INTO bulk_jobs (kind, filter, handler_id, state, matched, done, upto, position, created_by, created_at, updated_at)
         VALUES ('retry', '{{\"handler_id\": \"{}\", \"state\": \"failed\"}}', NULL, 'running', 4, 0,
                 (SELECT MAX(id) FROM deliveries), 0, 'admin', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        crm["id"]
    ));
    let app = TestApp::with_retries(db, "").await;
    let jobs = app.api_json("/api/v1/jobs").await;
    let job = finished_job(&app, &jobs["jobs"][0]["id"]).await;
    assert_eq!((job["state"].as_str(), job["done"].as_i64()), (Some("done"), Some(4)), "{job}");
    app.api_until(&path, "every delivery succeeded", |l| {
        l["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "succeeded")
    })
    .await;
}

async fn a_replay_delivers_past_events_to_a_new_handler(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    // Last week's events, before the handler existed: no delivery.
    for n in 0..5 {
        let (status, body) = app.post_event(&envelope("clients.create", json!(n % 2), json!({"n": n}))).await;
        assert_eq!((status, body["deliveries"].as_i64()), (StatusCode::ACCEPTED, Some(0)));
    }
    app.post_event(&envelope("clients.update", json!(1), json!({"n": 50}))).await;
    let new = app.create_handler(http_handler("new", "clients.create", &sink.url("/new"), 1)).await;
    let replay = format!("/api/v1/handlers/{}/replay", new["id"]);

    let (status, dry) = post_json(&app, &replay, json!({"object_id": "1"})).await;
    assert_eq!(status, StatusCode::OK, "no dry_run: only counted");
    assert_eq!(dry["matched"], 2, "{dry}");
    let (status, dry) = post_json(&app, &replay, json!({"dry_run": true})).await;
    assert_eq!((status, dry["matched"].as_i64()), (StatusCode::OK, Some(5)), "only its event's: {dry}");
    assert!(sink.received().is_empty());

    let (status, started) = post_json(&app, &replay, json!({"dry_run": false})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let job = finished_job(&app, &started["job"]["id"]).await;
    assert_eq!((job["state"].as_str(), job["done"].as_i64()), (Some("done"), Some(5)), "{job}");
    let got = sink.wait_for("/new", 5, Duration::from_secs(10)).await;
    let ns: Vec<i64> = got.iter().map(|r| r.json()["data"]["n"].as_i64().unwrap()).collect();
    for object in [0, 1] {
        let order: Vec<i64> = ns.iter().copied().filter(|n| n % 2 == object).collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "object {object}'s events in the order received: {ns:?}");
    }
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.headers["webhook-id"].as_str()).collect();
    assert_eq!(ids.len(), 5, "each replayed delivery is a message of its own");
    let audit = app.api_json("/api/v1/audit?action=deliveries.replay").await;
    assert_eq!(audit["entries"].as_array().unwrap().len(), 1, "{audit}");

    // Another event type than the handler's: 422 naming it; a disabled handler: 409.
    let (status, body) = post_json(&app, &replay, json!({"event": "clients.update"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["errors"]["event"].as_str().unwrap().contains("clients.create"), "{body}");
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{}", new["id"]))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (status, body) = post_json(&app, &replay, json!({"dry_run": false})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = post_json(&app, "/api/v1/handlers/424242/replay", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // In the browser: from the events list, the count, then the job.
    let csrf = app.sign_in().await;
    let other = app.create_handler(http_handler("other", "clients.create", &sink.url("/other"), 1)).await;
    let events = app.get_page("/provisioning/events?event=clients.create").await;
    assert!(events.contains(&format!(r#"<option value="{}">"#, other["id"])), "enabled handlers offered");
    let other_id = other["id"].to_string();
    let fields = [("csrf_token", csrf.as_str()), ("event", "clients.create"), ("handler_id", other_id.as_str())];
    let confirm = app.post_form("/provisioning/replay", &fields).await.text().await.unwrap();
    assert!(confirm.contains("<strong>5</strong> events match these filters"), "{confirm}");
    let mut confirmed = fields.to_vec();
    confirmed.push(("confirm", "yes"));
    let res = app.post_form("/provisioning/replay", &confirmed).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    sink.wait_for("/other", 5, Duration::from_secs(10)).await;
}

async fn a_running_job_can_be_cancelled(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    // Many events no handler matched, then a replay of them all: several batches.
    let events: Vec<Value> = (0..1500).map(|n| envelope("clients.create", json!(n), json!({"n": n}))).collect();
    for chunk in events.chunks(100) {
        let posts = chunk.iter().map(|e| app.post_event(e));
        for (status, _) in futures_util::future::join_all(posts).await {
            assert_eq!(status, StatusCode::ACCEPTED);
        }
    }
    let new = app.create_handler(http_handler("new", "clients.create", &sink.url("/new"), 1)).await;
    let (status, started) =
        post_json(&app, &format!("/api/v1/handlers/{}/replay", new["id"]), json!({"dry_run": false})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let id = &started["job"]["id"];
    // The same confirmation twice (a double click) starts one job.
    let (status, twice) =
        post_json(&app, &format!("/api/v1/handlers/{}/replay", new["id"]), json!({"dry_run": false})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{twice}");
    assert!(twice["error"].as_str().unwrap().contains(&format!("job {id}")), "{twice}");
    let (status, cancelled) = post_json(&app, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let done = cancelled["done"].as_i64().unwrap();
    assert!(done < 1500, "cancelled before the end: {cancelled}");
    // Nothing more is replayed; a second cancel is a 409.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let job = app.api_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(job["done"].as_i64(), Some(done), "{job}");
    let (status, _) = post_json(&app, &format!("/api/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    app.settled().await;
    let deliveries = app.api_json(&format!("/api/v1/deliveries?handler_id={}&limit=1000", new["id"])).await;
    assert_eq!(deliveries["deliveries"].as_array().unwrap().len() as i64, done.min(1000));

    // A replay whose handler is given another event meanwhile stops: the rest was not what was counted.
    let other = app.create_handler(http_handler("other", "clients.create", &sink.url("/other"), 1)).await;
    let (status, started) =
        post_json(&app, &format!("/api/v1/handlers/{}/replay", other["id"]), json!({"dry_run": false})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{}", other["id"]))
        .json(&json!({"events_id": "clients.update"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let job = finished_job(&app, &started["job"]["id"]).await;
    assert_eq!(job["state"], "cancelled", "{job}");
    assert!(job["done"].as_i64().unwrap() < 1500, "{job}");
}

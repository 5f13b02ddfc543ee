//! What an answer means (DESIGN §8.2): a `Retry-After` on 429/502/503/504
//! holds back every attempt of its handler until then, in seconds or as an
//! HTTP date, and the list says "cooling down until T"; `410 Gone` disables
//! the handler, cancels its pending deliveries and is audited.

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
    retry_after_in_seconds_holds_back_the_handlers_other_deliveries,
    retry_after_as_an_http_date_holds_back_the_handler_too,
    gone_disables_the_handler_and_cancels_its_pending_deliveries,
    each_handler_retries_on_its_own_schedule_or_the_global_one,
);

/// Posts the first event, waits for its 503, then three more for other
/// objects (free to go in parallel but for the hold); every later request
/// must arrive `hold` after the 503.
async fn held_back(db: TestDb, retry_after: impl FnOnce() -> String, hold: Duration) {
    let app = TestApp::with_retries(db, "100ms").await;
    let sink = Sink::start().await;
    sink.behave(
        "/crm",
        Behavior { statuses: [503].into(), headers: vec![("Retry-After", retry_after())], ..Behavior::default() },
    );
    let crm = app.create_handler(http_handler("crm", "clients.update", &sink.url("/crm"), 1)).await;
    app.post_event(&envelope("clients.update", json!(1), json!({}))).await;
    let first = sink.wait_for("/crm", 1, Duration::from_secs(10)).await;
    assert_eq!(first[0].status, 503);
    app.sign_in().await;
    let list = app.get_page("/provisioning").await;
    assert!(list.contains("cooling down until"), "the list says the handler is held back");
    for object in 2..5 {
        app.post_event(&envelope("clients.update", json!(object), json!({}))).await;
    }
    let got = sink.wait_for("/crm", 5, Duration::from_secs(15)).await;
    for later in &got[1..] {
        let waited = later.started - first[0].ended;
        assert!(waited >= hold - Duration::from_millis(50), "an attempt {waited:?} after the 503, held {hold:?}");
    }
    app.settled().await;
    let list = app.api_json(&format!("/api/v1/deliveries?handler_id={}", crm["id"])).await;
    assert!(list["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "succeeded"), "{list}");
    let log = app.api_json(&format!("/api/v1/handlers/{}/logs", crm["id"])).await;
    let failed = log["logs"].as_array().unwrap().iter().find(|l| l["status_code"] == 503).unwrap().clone();
    assert!(failed["error"].as_str().unwrap().contains("Retry-After"), "{failed}");
}

async fn retry_after_in_seconds_holds_back_the_handlers_other_deliveries(db: TestDb) {
    held_back(db, || "2".into(), Duration::from_secs(2)).await;
}

async fn retry_after_as_an_http_date_holds_back_the_handler_too(db: TestDb) {
    // An HTTP date is to the second: 3 s ahead holds at least 2 s.
    let at = || (chrono::Utc::now() + chrono::TimeDelta::seconds(3)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    held_back(db, at, Duration::from_secs(2)).await;
}

async fn gone_disables_the_handler_and_cancels_its_pending_deliveries(db: TestDb) {
    let app = TestApp::with_retries(db, "1h").await;
    let sink = Sink::start().await;
    // Object 1's first event is answered 410; its second waits behind it (per-object order).
    sink.behave("/old", Behavior { statuses: [410].into(), delay: Duration::from_millis(300), ..Behavior::default() });
    let old = app.create_handler(http_handler("old endpoint", "clients.update", &sink.url("/old"), 1)).await;
    app.post_event(&envelope("clients.update", json!(1), json!({"n": 1}))).await;
    app.post_event(&envelope("clients.update", json!(1), json!({"n": 2}))).await;
    app.api_until(&format!("/api/v1/handlers/{}", old["id"]), "the handler disabled", |h| h["status"] == "disabled")
        .await;
    app.settled().await;
    assert_eq!(sink.received_on("/old").len(), 1, "nothing more is sent to a gone endpoint");
    let list = app.api_json(&format!("/api/v1/deliveries?handler_id={}", old["id"])).await;
    let mut states: Vec<&str> =
        list["deliveries"].as_array().unwrap().iter().map(|d| d["state"].as_str().unwrap()).collect();
    states.sort();
    assert_eq!(states, ["cancelled", "cancelled"], "the gone one and the one waiting: {list}");
    let audit = app.api_json("/api/v1/audit?action=handler.gone").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["actor"], "provisiond", "{audit}");
    assert_eq!(entry["changes"]["status"], json!({"old": "enabled", "new": "disabled"}));
    let (status, _) = app.post_event(&envelope("clients.update", json!(2), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received_on("/old").len(), 1, "a disabled handler gets no new event");
}

async fn each_handler_retries_on_its_own_schedule_or_the_global_one(db: TestDb) {
    let app = TestApp::with_retries(db, "1h").await;
    let sink = Sink::start().await;
    for path in ["/quick", "/global", "/never"] {
        sink.behave(path, Behavior { statuses: [500; 5].into(), ..Behavior::default() });
    }
    let mut quick = http_handler("quick", "clients.update", &sink.url("/quick"), 1);
    quick["retry_schedule"] = json!("100ms, 200ms");
    let quick = app.create_handler(quick).await;
    assert_eq!(quick["retry_schedule"], "100ms,200ms", "stored as it reads");
    let global = app.create_handler(http_handler("global", "clients.update", &sink.url("/global"), 2)).await;
    assert_eq!(global["retry_schedule"], serde_json::Value::Null);
    let mut never = http_handler("never", "clients.update", &sink.url("/never"), 3);
    never["retry_schedule"] = json!("none");
    let never = app.create_handler(never).await;
    app.post_event(&envelope("clients.update", json!(1), json!({}))).await;
    let state_of = |handler: &serde_json::Value, list: &serde_json::Value| {
        let d = list["deliveries"].as_array().unwrap().iter().find(|d| d["handler_id"] == handler["id"]).cloned();
        d.map(|d| (d["state"].as_str().unwrap().to_owned(), d["attempts"].as_i64().unwrap()))
    };
    let list = app
        .api_until("/api/v1/deliveries", "each on its schedule", |l| {
            state_of(&quick, l) == Some(("failed".into(), 3))
                && state_of(&never, l) == Some(("failed".into(), 1))
                && state_of(&global, l) == Some(("retrying".into(), 1))
        })
        .await;
    let retrying = list["deliveries"].as_array().unwrap().iter().find(|d| d["handler_id"] == global["id"]).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(retrying["next_attempt_at"].as_str().unwrap()).unwrap();
    assert!(due > chrono::Utc::now() + chrono::TimeDelta::minutes(50), "the global 1h: {retrying}");
    assert_eq!(sink.received_on("/quick").len(), 3);

    // A schedule that does not read is named; the page shows the global one beside the field.
    let mut bad = http_handler("bad", "clients.update", &sink.url("/bad"), 4);
    bad["retry_schedule"] = json!("soon");
    let res = app.api(reqwest::Method::POST, "/api/v1/handlers").json(&bad).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["errors"]["retry_schedule"].is_string(), "{body}");
    app.sign_in().await;
    let page = app.get_page(&format!("/provisioning/{}/edit", quick["id"])).await;
    assert!(page.contains(r#"value="100ms,200ms""#) && page.contains("<code>1h</code>"), "{page}");
}

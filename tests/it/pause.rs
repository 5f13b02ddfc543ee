//! Pausing a handler (DESIGN §8.1): its events go on making deliveries,
//! durably and in order, none is attempted; the handlers beside it go on as
//! if it were not there; resumed, its backlog drains in per-object order with
//! nothing lost or cancelled.

use std::{collections::HashMap, time::Duration};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::Sink,
};

on_both_backends!(a_paused_handler_loses_nothing_and_its_backlog_drains_in_order_on_resume);

async fn set_status(app: &TestApp, handler: &Value, status: &str) {
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{}", handler["id"]))
        .json(&json!({"status": status}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK, "{status}");
}

/// Per object, the event ids a path received, in the order they arrived.
fn arrivals_by_object(sink: &Sink, path: &str, event_ids: &HashMap<i64, i64>) -> HashMap<String, Vec<i64>> {
    let mut by_object: HashMap<String, Vec<i64>> = HashMap::new();
    for r in sink.received_on(path) {
        let body = r.json();
        let n = body["data"]["n"].as_i64().unwrap();
        by_object.entry(body["event"]["object_id"].to_string()).or_default().push(event_ids[&n]);
    }
    by_object
}

async fn a_paused_handler_loses_nothing_and_its_backlog_drains_in_order_on_resume(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    // The paused one comes first in the chain: it must hold up nobody.
    let paused = app.create_handler(http_handler("paused", "clients.update", &sink.url("/paused"), 1)).await;
    let beside = app.create_handler(http_handler("beside", "clients.update", &sink.url("/beside"), 2)).await;
    // Paused from the list's ⏸ button.
    let csrf = app.sign_in().await;
    let list = app.get_page("/provisioning").await;
    assert!(list.contains(&format!(r#"aria-label="Pause handler {}""#, paused["id"])), "offered in the row");
    let fields = [("csrf_token", csrf.as_str()), ("status", "paused"), ("return_to", "/provisioning")];
    let res = app.post_form(&format!("/provisioning/{}/status", paused["id"]), &fields).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let list = app.get_page("/provisioning").await;
    assert!(list.contains(&format!(r#"aria-label="Resume handler {}""#, paused["id"])), "then resume");

    // 1,000 events about 50 objects, 50 posted at a time.
    let mut event_ids = HashMap::new();
    for chunk in (0..1000i64).collect::<Vec<_>>().chunks(50) {
        let posts = chunk.iter().map(|n| {
            let body = envelope("clients.update", json!(n % 50), json!({"n": n}));
            let app = &app;
            async move { (*n, app.post_event(&body).await) }
        });
        for (n, (status, answer)) in futures_util::future::join_all(posts).await {
            assert_eq!(status, StatusCode::ACCEPTED);
            assert_eq!(answer["deliveries"], 2, "a delivery for the paused handler too");
            event_ids.insert(n, answer["id"].as_i64().unwrap());
        }
    }
    // The other handler gets every event meanwhile; the paused one nothing.
    sink.wait_for("/beside", 1000, Duration::from_secs(60)).await;
    let count = |state: &'static str| {
        let (app, id) = (&app, paused["id"].clone());
        async move {
            let list = app.api_json(&format!("/api/v1/deliveries?handler_id={id}&state={state}&limit=1000")).await;
            list["deliveries"].as_array().unwrap().len()
        }
    };
    // Each object's first is due (pending), the rest wait on it.
    assert_eq!((count("pending").await, count("waiting").await), (50, 950), "all kept");
    assert!(sink.received_on("/paused").is_empty(), "a paused handler is sent nothing");
    let list = app.get_page("/provisioning").await;
    assert!(list.contains("paused: 1,000 waiting, the oldest since"), "the list shows its backlog");

    // Resumed: the backlog drains, each object's events in the order received, none cancelled.
    set_status(&app, &paused, "enabled").await;
    sink.wait_for("/paused", 1000, Duration::from_secs(60)).await;
    for (object, ids) in arrivals_by_object(&sink, "/paused", &event_ids) {
        assert_eq!(ids.len(), 20, "object {object}: every event once");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "object {object} in the order received: {ids:?}");
    }
    app.settled().await;
    let cancelled =
        app.api_json(&format!("/api/v1/deliveries?handler_id={}&state=cancelled&limit=1000", paused["id"])).await;
    assert_eq!(cancelled["deliveries"], json!([]), "nothing cancelled");
    let audit = app.api_json("/api/v1/audit?action=handler.").await;
    let changes: Vec<&Value> = audit["entries"].as_array().unwrap().iter().map(|e| &e["changes"]["status"]).collect();
    assert!(changes.contains(&&json!({"old": "enabled", "new": "paused"})), "pausing is audited: {audit}");
    assert!(changes.contains(&&json!({"old": "paused", "new": "enabled"})), "resuming too: {audit}");

    // Disabling still cancels, as in VCS; a click on the status of a paused handler resumes it.
    set_status(&app, &paused, "paused").await;
    app.post_event(&envelope("clients.update", json!(1), json!({"n": 5000}))).await;
    set_status(&app, &paused, "disabled").await;
    let cancelled = app.api_json(&format!("/api/v1/deliveries?handler_id={}&state=cancelled", paused["id"])).await;
    assert_eq!(cancelled["deliveries"].as_array().unwrap().len(), 1);
    let _ = beside;
}

//! Testing a handler (DESIGN §8.5) and the history kept of it: a test event
//! is a real, signed attempt sent now — before the handler is enabled —
//! logged as a test; a handler's logs outlive it, each attempt with the
//! target it went to.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    a_test_event_is_a_signed_attempt_sent_now_and_logged_as_a_test,
    a_test_event_from_the_handlers_page_shows_its_outcome_at_once,
    a_scripts_test_event_runs_the_script,
    a_deleted_handlers_logs_stay_with_its_name_and_each_attempt_keeps_its_target,
);

async fn post_test(app: &TestApp, id: &Value, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = app.api(Method::POST, &format!("/api/v1/handlers/{id}/test"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn a_test_event_is_a_signed_attempt_sent_now_and_logged_as_a_test(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    // Not enabled yet: a test is how it is tried first.
    let mut body = http_handler("crm", "clients.create", &sink.url("/crm"), 1);
    body["status"] = json!("disabled");
    let handler = app.create_handler(body).await;

    let (status, sent) = post_test(&app, &handler["id"], None).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!((sent["outcome"].as_str(), sent["status_code"].as_i64()), (Some("success"), Some(200)), "{sent}");
    assert_eq!(sent["target"], sink.url("/crm"));
    assert_eq!(sent["response"], r#"{"answered":200}"#);
    let got = sink.received_on("/crm");
    assert_eq!(got.len(), 1, "sent at once");
    let body = got[0].json();
    assert_eq!(body["event"]["events_id"], "clients.create", "the catalogue's sample: {body}");
    assert_eq!(body["data"]["name"], "My name");
    // Signed like any attempt, checked by the Standard Webhooks reference library.
    let verifier = standardwebhooks::Webhook::new(handler["secret"].as_str().unwrap()).unwrap();
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, got[0].headers[name].parse().unwrap());
    }
    verifier.verify(got[0].body.as_bytes(), &headers).expect("a valid signature");

    // Logged, marked as a test, with no delivery; audited.
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    let log = &logs["logs"][0];
    assert_eq!((log["test"].as_bool(), log["delivery_id"].as_i64()), (Some(true), Some(0)), "{log}");
    assert_eq!(log["id"], sent["log_id"]);
    assert_eq!(log["target"], sink.url("/crm"));
    assert_eq!(app.api_json("/api/v1/deliveries").await["deliveries"], json!([]), "no delivery");
    let audit = app.api_json("/api/v1/audit?action=handler.test").await;
    assert_eq!(audit["entries"][0]["changes"]["outcome"], "success", "{audit}");

    // An envelope of one's own; a failing endpoint's answer shown; bad input named.
    sink.behave("/crm", Behavior { statuses: [500].into(), ..Behavior::default() });
    let mine = envelope("clients.create", json!(77), json!({"name": "Mine"}));
    let (status, sent) = post_test(&app, &handler["id"], Some(json!({"payload": mine}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((sent["outcome"].as_str(), sent["status_code"].as_i64()), (Some("http_error"), Some(500)), "{sent}");
    assert_eq!(sink.received_on("/crm")[1].json()["event"]["object_id"], 77);
    let (status, bad) = post_test(&app, &handler["id"], Some(json!({"payload": "{\"event\": 1}"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    assert!(bad["errors"]["payload"].is_string(), "{bad}");
    let (status, _) = post_test(&app, &json!(424242), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(sink.received_on("/crm").len(), 2, "nothing retried");
}

async fn a_test_event_from_the_handlers_page_shows_its_outcome_at_once(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let sink = Sink::start().await;
    sink.behave("/crm", Behavior { body: Some(b"provisioned client 12".to_vec()), ..Behavior::default() });
    let handler = app.create_handler(http_handler("crm", "clients.create", &sink.url("/crm"), 1)).await;
    let list = app.get_page("/provisioning").await;
    assert!(list.contains(&format!(r#"href="/provisioning/{}/test""#, handler["id"])), "offered in the list");
    let page = app.get_page(&format!("/provisioning/{}/test", handler["id"])).await;
    assert!(page.contains("&#34;events_id&#34;: &#34;clients.create&#34;"), "the sample, to edit: {page}");

    let payload = envelope("clients.create", json!(12), json!({"name": "Ann"})).to_string();
    let path = format!("/provisioning/{}/test", handler["id"]);
    let res = app.post_form(&path, &[("csrf_token", &csrf), ("payload", &payload)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"<span class="outcome ok" id="test-outcome">success</span>"#), "{page}");
    assert!(page.contains(r#"<dd id="test-status">200</dd>"#));
    assert!(page.contains("provisioned client 12"), "the response");
    let log_id: i64 = page.split("/provisioning/logs/").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
    let detail = app.get_page(&format!("/provisioning/logs/{log_id}")).await;
    assert!(detail.contains(r#"id="test-note""#), "marked as a test");
    assert!(!detail.contains("Retry delivery") && !detail.contains("Delivery #"), "no delivery to retry");

    let res = app.post_form(&path, &[("csrf_token", &csrf), ("payload", "{not json")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"id="payload-error""#) && page.contains("{not json"), "the message beside the kept text");
    assert_eq!(sink.received_on("/crm").len(), 1);

    // The samples page: every event with a curl that posts it here.
    let samples = app.get_page("/provisioning/help/events").await;
    assert!(samples.contains(r#"id="clients.create""#) && samples.contains(r#"id="accounting.payments.create""#));
    assert!(samples.contains(&format!("curl -X POST &#39;{}&#39;", app.url("/api/v1/events"))), "{samples}");
}

async fn a_scripts_test_event_runs_the_script(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let out = app.scripts_dir.join("got.json");
    let script = app.write_script("save.sh", &format!("#!/bin/sh\ncat > '{}'\necho saved\n", out.display()), true);
    let handler = app
        .create_handler(json!({"name": "save", "events_id": "accounting.payments.create", "type": "script",
                               "target": script.file_name().unwrap().to_str().unwrap()}))
        .await;
    let (status, sent) = post_test(&app, &handler["id"], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((sent["outcome"].as_str(), sent["status_code"].as_i64()), (Some("success"), Some(0)), "{sent}");
    assert_eq!(sent["response"].as_str().map(str::trim), Some("saved"));
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(got["event"]["events_id"], "accounting.payments.create");
}

async fn a_deleted_handlers_logs_stay_with_its_name_and_each_attempt_keeps_its_target(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let sink = Sink::start().await;
    let handler = app.create_handler(http_handler("Billing CRM", "clients.create", &sink.url("/old"), 1)).await;
    let id = handler["id"].clone();
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    sink.wait_for("/old", 1, std::time::Duration::from_secs(10)).await;
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{id}"))
        .json(&json!({"target": sink.url("/new")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.post_event(&envelope("clients.create", json!(2), json!({}))).await;
    sink.wait_for("/new", 1, std::time::Duration::from_secs(10)).await;
    app.settled().await;
    let logs = app.api_json(&format!("/api/v1/handlers/{id}/logs")).await;
    let targets: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["target"].as_str().unwrap()).collect();
    assert_eq!(targets, [sink.url("/new"), sink.url("/old")], "each attempt where it went");
    let first = logs["logs"][1]["id"].clone();
    let detail = app.get_page(&format!("/provisioning/logs/{first}")).await;
    assert!(detail.contains(&format!("<code>{}</code>", sink.url("/old"))), "{detail}");
    assert!(detail.contains("the handler points at"), "says the handler has moved since");

    let res = app.post_form(&format!("/provisioning/{id}/delete"), &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let all = app.get_page("/provisioning/logs").await;
    assert_eq!(all.matches("Billing CRM (deleted)").count(), 2, "the logs outlive their handler: {all}");
    let detail = app.get_page(&format!("/provisioning/logs/{first}")).await;
    assert!(detail.contains("Billing CRM (deleted)") && detail.contains(&sink.url("/old")), "{detail}");
}

//! Where handlers may point (DESIGN §8.4): a denied address is refused at
//! save time in any notation, and a name resolving into a denied range fails
//! its attempt without a connection.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb, field_error},
    on_both_backends,
    sink::Sink,
};

on_both_backends!(a_denied_address_is_refused_at_save_time, a_name_resolving_into_a_denied_range_fails_its_attempt);

async fn a_denied_address_is_refused_at_save_time(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    for target in
        ["http://2852039166/latest/meta-data/", "http://[::ffff:169.254.169.254]/", "http://0x0:80/", "http://[::]/"]
    {
        let res = app
            .api(Method::POST, "/api/v1/handlers")
            .json(&http_handler("metadata", "clients.create", target, 0))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{target}");
        let body: Value = res.json().await.unwrap();
        assert!(body["errors"]["target"].as_str().unwrap().contains("PROVISIOND_DENY_TARGETS denies"), "{body}");
    }
    let res = app
        .post_form(
            "/provisioning",
            &[
                ("csrf_token", &csrf),
                ("name", "creds"),
                ("events_id", "clients.create"),
                ("type", "http"),
                ("target", "http://billing:hunter2@10.0.0.5/hook"),
                ("status", "enabled"),
                ("priority", "0"),
                ("timeout_ms", "1000"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(field_error(&page, "target").unwrap().contains("must not hold a user name or password"), "{page}");
    assert!(app.api_json("/api/v1/handlers").await["handlers"].as_array().unwrap().is_empty(), "nothing saved");
}

async fn a_name_resolving_into_a_denied_range_fails_its_attempt(db: TestDb) {
    // Loopback denied: `localhost` is a name that resolves into it, with no
    // resolver of the test's own.
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| {
        s.deny_targets = provisiond::domain::target::DenyList::parse("127.0.0.0/8,::1/128").unwrap();
        s.retry_schedule = provisiond::domain::RetrySchedule::parse("").unwrap();
    })
    .await;
    let sink = Sink::start().await;
    let literal = sink.url("/hook");
    let res = app
        .api(Method::POST, "/api/v1/handlers")
        .json(&http_handler("literal", "clients.create", &literal, 0))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{literal} is a denied literal");
    let by_name = literal.replace("127.0.0.1", "localhost");
    let handler = app.create_handler(http_handler("by name", "clients.create", &by_name, 0)).await;
    let (status, _) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.settled().await;
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    let log = &logs["logs"][0];
    assert_eq!(log["outcome"], "connection_error", "{log}");
    let error = log["error"].as_str().unwrap();
    assert!(error.contains("localhost resolves to") && error.contains("PROVISIOND_DENY_TARGETS denies"), "{error}");
    assert!(sink.received_on("/hook").is_empty(), "no request reached the denied address");
}

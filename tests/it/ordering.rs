//! Per-object order within an ordering group (DESIGN §4.4): across the
//! handlers sharing a target or an explicit `ordering_group`, not only within
//! one handler.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb, field_error},
    on_both_backends,
    sink::{Behavior, Received, Sink},
};

on_both_backends!(
    handlers_sharing_a_target_get_an_objects_events_in_the_order_received,
    a_slow_first_event_holds_its_objects_later_events_for_the_rest_of_its_group_only,
    the_ordering_group_is_a_field_of_the_form_the_api_and_the_list,
    a_handler_moved_to_another_target_keeps_its_own_events_in_order,
);

const WAIT: Duration = Duration::from_secs(15);

fn step(r: &Received) -> String {
    r.json()["data"]["step"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, events_id: &str, object: i64, step: &str) {
    let (status, _) = app.post_event(&envelope(events_id, json!(object), json!({ "step": step }))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

/// A client's create, update and delete handlers all calling one CRM: the
/// create fails once and is retried; the client's update and delete wait for
/// it although their handlers are others; another client goes on meanwhile.
async fn handlers_sharing_a_target_get_an_objects_events_in_the_order_received(db: TestDb) {
    let app = TestApp::with_retries(db, "700ms").await;
    let sink = Sink::start().await;
    sink.behave(
        "/crm",
        Behavior { statuses: [500].into(), only_if_body_contains: Some("\"c1-create\"".into()), ..Behavior::default() },
    );
    for events_id in ["clients.create", "clients.update", "clients.delete"] {
        app.create_handler(http_handler(events_id, events_id, &sink.url("/crm"), 1)).await;
    }
    post(&app, "clients.create", 1, "c1-create").await;
    post(&app, "clients.update", 1, "c1-update").await;
    post(&app, "clients.create", 2, "c2-create").await;
    post(&app, "clients.delete", 1, "c1-delete").await;

    let received = sink.wait_for("/crm", 5, WAIT).await;
    let client1: Vec<&Received> = received.iter().filter(|r| step(r).starts_with("c1")).collect();
    let seen: Vec<(String, u16)> = client1.iter().map(|r| (step(r), r.status)).collect();
    assert_eq!(
        seen,
        [("c1-create", 500), ("c1-create", 200), ("c1-update", 200), ("c1-delete", 200)]
            .map(|(s, c)| (s.to_owned(), c))
            .to_vec(),
        "client 1's events in the order received, across three handlers"
    );
    for pair in client1.windows(2) {
        assert!(pair[1].started >= pair[0].ended, "{} started before {} ended", step(pair[1]), step(pair[0]));
    }
    let other = received.iter().find(|r| step(r) == "c2-create").unwrap();
    assert!(other.started < client1[1].started, "client 2 did not wait for client 1's retry");
}

/// An explicit group over two targets: a slow create holds the same client's
/// update of the group's other handler, not another client's, and not the
/// update of a handler outside the group.
async fn a_slow_first_event_holds_its_objects_later_events_for_the_rest_of_its_group_only(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/create", Behavior { delay: Duration::from_millis(1500), ..Behavior::default() });
    let grouped = |events_id: &str, path: &str| {
        let mut h = http_handler(path, events_id, &sink.url(path), 1);
        h["ordering_group"] = json!("crm");
        h
    };
    app.create_handler(grouped("clients.create", "/create")).await;
    app.create_handler(grouped("clients.update", "/update")).await;
    // First in the update's chain, so rule 3 does not hold it behind the group.
    app.create_handler(http_handler("audit", "clients.update", &sink.url("/audit"), 0)).await;

    post(&app, "clients.create", 1, "c1-create").await;
    sink.wait_arrivals(1, WAIT).await;
    post(&app, "clients.update", 1, "c1-update").await;
    post(&app, "clients.update", 2, "c2-update").await;

    let create = sink.wait_for("/create", 1, WAIT).await.remove(0);
    let updates = sink.wait_for("/update", 2, WAIT).await;
    let update_of = |s: &str| updates.iter().find(|r| step(r) == s).unwrap().clone();
    assert!(update_of("c1-update").started >= create.ended, "the group's update waited for the create to end");
    assert!(update_of("c2-update").started < create.ended, "another client went on meanwhile");
    let audit = sink.wait_for("/audit", 2, WAIT).await;
    let audited = audit.iter().find(|r| step(r) == "c1-update").unwrap();
    assert!(audited.started < create.ended, "a handler outside the group was not held");
}

async fn the_ordering_group_is_a_field_of_the_form_the_api_and_the_list(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let mut body = http_handler("CRM", "clients.create", "127.0.0.1:5000/api", 1);
    body["ordering_group"] = json!("  crm-1 ");
    let created = app.create_handler(body).await;
    assert_eq!(created["ordering_group"], "crm-1", "trimmed");
    let id = created["id"].as_i64().unwrap();
    let page = app.get_page("/provisioning").await;
    assert!(page.contains("group <code>crm-1</code>"), "the list shows the group");
    let form = app.get_page(&format!("/provisioning/{id}/edit")).await;
    assert!(form.contains(r#"name="ordering_group" value="crm-1""#), "the form is filled with it");

    let patch = |value: Value| {
        app.api(Method::PATCH, &format!("/api/v1/handlers/{id}")).json(&json!({ "ordering_group": value }))
    };
    let res = patch(json!("g".repeat(201))).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let errors: Value = res.json().await.unwrap();
    assert!(errors["errors"]["ordering_group"].as_str().unwrap().contains("200"), "{errors}");
    let res = patch(json!("")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["ordering_group"], Value::Null, "blank: the target is the group");

    let fields = [
        ("csrf_token", csrf.as_str()),
        ("name", "CRM"),
        ("events_id", "clients.create"),
        ("type", "http"),
        ("target", "127.0.0.1:5000/api"),
        ("ordering_group", "bad\u{7}group"),
    ];
    let res = app.post_form(&format!("/provisioning/{id}"), &fields).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(field_error(&page, "ordering_group").unwrap().contains("control characters"), "the form says why");
}

/// A handler's first event about a client fails and waits for its retry;
/// meanwhile the handler is pointed at another endpoint. Its next event about
/// that client still waits for the first: the waiting delivery moved into
/// the handler's new group with it.
async fn a_handler_moved_to_another_target_keeps_its_own_events_in_order(db: TestDb) {
    let app = TestApp::with_retries(db, "700ms").await;
    let sink = Sink::start().await;
    sink.behave(
        "/old",
        Behavior { statuses: [500].into(), only_if_body_contains: Some("\"c1-first\"".into()), ..Behavior::default() },
    );
    let handler = app.create_handler(http_handler("crm", "clients.update", &sink.url("/old"), 1)).await;
    post(&app, "clients.update", 1, "c1-first").await;
    sink.wait_for("/old", 1, WAIT).await;
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{}", handler["id"]))
        .json(&json!({ "target": sink.url("/new") }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    post(&app, "clients.update", 1, "c1-second").await;
    let received = sink.wait_for("/new", 2, WAIT).await;
    let steps: Vec<String> = received.iter().map(step).collect();
    assert_eq!(steps, ["c1-first", "c1-second"], "the retry (at the new target) before the next event");
    assert!(received[1].started >= received[0].ended);
}

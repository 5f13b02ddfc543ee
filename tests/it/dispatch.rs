//! Delivery as a handler sees it (DESIGN §4), with a real sink and real scripts.

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::{
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

const WAIT: Duration = Duration::from_secs(10);

on_both_backends!(
    the_handler_gets_the_posted_envelope_signed,
    handlers_of_one_event_run_in_priority_order_without_overlap,
    one_objects_events_stay_in_order_across_a_failure_while_others_proceed,
    a_failed_attempt_is_retried_until_it_succeeds,
    a_delivery_fails_for_good_when_retries_run_out,
    timeouts_and_refused_connections_are_recorded,
    disabling_a_handler_cancels_its_pending_deliveries,
    a_new_or_edited_handler_applies_to_the_next_event,
    a_finished_delivery_can_be_retried_by_hand,
    a_stop_lets_attempts_in_flight_finish,
    deleting_a_handler_mid_attempt_leaves_the_others_working,
    a_rotated_secret_signs_beside_the_new_one_for_the_overlap,
    a_v1a_handler_signs_with_ed25519_and_shows_its_public_key,
);

pub fn envelope(events_id: &str, object_id: Value, data: Value) -> Value {
    json!({"event": {"dt": "2026-11-24T10:00:00+00:00", "events_id": events_id, "object_id": object_id}, "data": data})
}

pub fn http_handler(name: &str, events_id: &str, target: &str, priority: i64) -> Value {
    json!({"name": name, "events_id": events_id, "type": "http", "target": target, "priority": priority})
}

/// Verifies a Standard Webhooks signature independently of the server's code.
fn verify_signature(secret: &str, id: &str, timestamp: &str, body: &str, header: &str) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    header.split(' ').any(|sig| sig == expected)
}

async fn the_handler_gets_the_posted_envelope_signed(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    let handler = app.create_handler(http_handler("CRM", "clients.create", &sink.url("/crm"), 1)).await;
    let posted = r#"{"event": {"dt": "2000-01-01T00:00:00+00:00", "events_id": "clients.create", "object_id": 12},
                     "data": {"id": 12, "name": "My name", "companies_id": 3, "rate": 1.50, "tags": ["a", "ü"]}}"#;
    let res = app
        .api(Method::POST, "/api/v1/events")
        .header("content-type", "application/json")
        .body(posted)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["deliveries"], 1);
    let event_id = answer["id"].as_i64().unwrap();

    let got = sink.wait_for("/crm", 1, WAIT).await.remove(0);
    assert_eq!(got.body, posted, "the handler receives the envelope exactly as posted");
    assert_eq!(got.headers["content-type"], "application/json");
    assert!(got.headers["user-agent"].starts_with("provisiond/"));
    let id = &got.headers["webhook-id"];
    let ts = &got.headers["webhook-timestamp"];
    assert!(id.starts_with("msg_"));
    let age = chrono::Utc::now().timestamp() - ts.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "a current timestamp");
    let secret = handler["secret"].as_str().unwrap();
    assert!(verify_signature(secret, id, ts, &got.body, &got.headers["webhook-signature"]), "the signature verifies");
    assert!(!verify_signature(secret, id, ts, &got.body.replace("12", "13"), &got.headers["webhook-signature"]));

    // The event's page shows the delivery succeeded; the log has the attempt.
    let event = app
        .api_until(&format!("/api/v1/events/{event_id}"), "a succeeded delivery", |e| {
            e["deliveries"][0]["state"] == "succeeded"
        })
        .await;
    assert_eq!(event["payload"]["data"]["name"], "My name");
    assert_eq!(event["deliveries"][0]["webhook_id"], id.as_str());
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    let log = &logs["logs"][0];
    assert_eq!(
        (log["outcome"].as_str(), log["status_code"].as_i64(), log["attempt"].as_i64()),
        (Some("success"), Some(200), Some(1))
    );
    assert_eq!(log["response_body"], r#"{"answered":200}"#);
    assert_eq!(log["request_body"], posted);
    // The log holds the headers as sent, as a JSON object.
    let logged = log["request_headers"].as_object().expect("the headers are an object");
    for name in ["content-type", "user-agent", "webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(logged[name], got.headers[name].as_str(), "{name} as sent");
    }

    // Without dt, it is filled in; everything else arrives value for value.
    let (status, _) =
        app.post_event(&json!({"event": {"events_id": "clients.create", "object_id": "C-7"}, "data": []})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let second = sink.wait_for("/crm", 2, WAIT).await.remove(1).json();
    assert_eq!(second["event"]["object_id"], "C-7", "a string object_id stays a string");
    assert_eq!(second["data"], json!([]));
    let dt = second["event"]["dt"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(dt).is_ok(), "{dt}");
}

async fn handlers_of_one_event_run_in_priority_order_without_overlap(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    let slow = |ms| Behavior { delay: Duration::from_millis(ms), ..Behavior::default() };
    sink.behave("/p10", slow(300));
    sink.behave("/p5", Behavior { statuses: [500].into(), ..slow(300) });
    // Created out of order; two share priority 20 (the lower id goes first).
    app.create_handler(http_handler("p10", "clients.update", &sink.url("/p10"), 10)).await;
    app.create_handler(http_handler("p20a", "clients.update", &sink.url("/p20a"), 20)).await;
    app.create_handler(http_handler("p5", "clients.update", &sink.url("/p5"), 5)).await;
    app.create_handler(http_handler("p20b", "clients.update", &sink.url("/p20b"), 20)).await;
    app.create_handler(http_handler("other event", "clients.delete", &sink.url("/other"), 0)).await;
    let (status, answer) = app.post_event(&envelope("clients.update", json!(1), json!({"id": 1}))).await;
    assert_eq!((status, answer["deliveries"].as_i64()), (StatusCode::ACCEPTED, Some(4)));
    // /p5's retry may come in between (it is outside the chain): wait for each handler.
    let chain = ["/p5", "/p10", "/p20a", "/p20b"];
    let received = sink
        .wait_until(WAIT, "the chain's first attempts", |r| chain.iter().all(|p| r.iter().any(|r| r.path == *p)))
        .await;
    let firsts: Vec<_> = chain
        .iter()
        .map(|p| received.iter().find(|r| r.path == *p).unwrap_or_else(|| panic!("{p} called")).clone())
        .collect();
    for pair in firsts.windows(2) {
        assert!(
            pair[1].started >= pair[0].ended,
            "{} started before {} ended: a failure does not stop the chain, but nothing overlaps",
            pair[1].path,
            pair[0].path
        );
    }
    assert!(sink.received_on("/other").is_empty(), "handlers of other events get nothing");
    // /p5's retry runs on its own, outside the chain.
    sink.wait_for("/p5", 2, WAIT).await;
}

async fn one_objects_events_stay_in_order_across_a_failure_while_others_proceed(db: TestDb) {
    let app = TestApp::with_retries(db, "700ms").await;
    let sink = Sink::start().await;
    sink.behave(
        "/obj",
        Behavior { statuses: [500].into(), only_if_body_contains: Some("\"first\"".into()), ..Behavior::default() },
    );
    app.create_handler(http_handler("objects", "clients.accounts.update", &sink.url("/obj"), 1)).await;
    for (object, step) in [(1, "first"), (1, "second"), (2, "other"), (1, "third")] {
        let (status, _) =
            app.post_event(&envelope("clients.accounts.update", json!(object), json!({"step": step}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let received = sink.wait_for("/obj", 5, WAIT).await;
    let steps: Vec<(String, u16)> =
        received.iter().map(|r| (r.json()["data"]["step"].as_str().unwrap().to_owned(), r.status)).collect();
    let position = |step: &str, status: u16| steps.iter().position(|s| s.0 == step && s.1 == status).unwrap();
    assert!(position("other", 200) < position("first", 200), "object 2 did not wait for object 1's retry: {steps:?}");
    let object1: Vec<_> = steps.iter().filter(|s| s.0 != "other").cloned().collect();
    let expected = [("first", 500), ("first", 200), ("second", 200), ("third", 200)];
    assert_eq!(
        object1,
        expected.map(|(s, c)| (s.to_owned(), c)).to_vec(),
        "object 1 in order, each after the last succeeded"
    );
}

async fn a_failed_attempt_is_retried_until_it_succeeds(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/flaky", Behavior { statuses: [500, 503].into(), ..Behavior::default() });
    let handler = app.create_handler(http_handler("flaky", "clients.create", &sink.url("/flaky"), 1)).await;
    let (_, answer) = app.post_event(&envelope("clients.create", json!(5), json!({}))).await;
    let got = sink.wait_for("/flaky", 3, WAIT).await;
    assert_eq!(got.iter().map(|r| r.status).collect::<Vec<_>>(), [500, 503, 200]);
    let ids: Vec<_> = got.iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "webhook-id is stable across retries");
    assert!(got[1].started.duration_since(got[0].ended) >= Duration::from_millis(80), "the schedule's delay is kept");
    app.api_until(&format!("/api/v1/events/{}", answer["id"]), "success", |e| {
        e["deliveries"][0]["state"] == "succeeded"
    })
    .await;
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    let rows: Vec<(i64, String, i64)> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["attempt"].as_i64().unwrap(),
                l["outcome"].as_str().unwrap().to_owned(),
                l["status_code"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, [(3, "success".into(), 200), (2, "http_error".into(), 503), (1, "http_error".into(), 500)]);
    assert!(logs["logs"][1]["next_attempt_at"].is_string(), "a failed attempt says when the next is due");
}

async fn a_delivery_fails_for_good_when_retries_run_out(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/down", Behavior { statuses: [500; 10].into(), ..Behavior::default() });
    let handler = app.create_handler(http_handler("down", "clients.create", &sink.url("/down"), 1)).await;
    let (_, answer) = app.post_event(&envelope("clients.create", json!(5), json!({}))).await;
    let event = app
        .api_until(&format!("/api/v1/events/{}", answer["id"]), "failed", |e| e["deliveries"][0]["state"] == "failed")
        .await;
    assert_eq!(event["deliveries"][0]["attempts"], 3, "a schedule of 2 delays gives 3 attempts");
    // Nothing is left unfinished, so nothing more can be attempted.
    app.settled().await;
    assert_eq!(sink.received_on("/down").len(), 3, "no attempt after the last");
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    assert_eq!(logs["logs"].as_array().unwrap().len(), 3);
    assert!(logs["logs"][0]["next_attempt_at"].is_null(), "the last attempt has no next");
    assert!(logs["logs"][0]["error"].as_str().unwrap().contains("500"));
}

async fn timeouts_and_refused_connections_are_recorded(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/slow", Behavior { delay: Duration::from_secs(3), ..Behavior::default() });
    let mut slow = http_handler("slow", "clients.create", &sink.url("/slow"), 1);
    slow["timeout_ms"] = json!(300);
    let slow = app.create_handler(slow).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused =
        app.create_handler(http_handler("refused", "clients.create", &format!("127.0.0.1:{closed}/x"), 2)).await;
    let (_, answer) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    app.api_until(&format!("/api/v1/events/{}", answer["id"]), "both failed", |e| {
        e["deliveries"].as_array().unwrap().iter().all(|d| d["state"] == "failed")
    })
    .await;
    let slow_log = &app.api_json(&format!("/api/v1/handlers/{}/logs", slow["id"])).await["logs"][0];
    assert_eq!(slow_log["outcome"], "timeout");
    assert!(slow_log["error"].as_str().unwrap().contains("timeout of 300 ms"), "{slow_log}");
    assert!(slow_log["duration_ms"].as_i64().unwrap() < 2000);
    let refused_log = &app.api_json(&format!("/api/v1/handlers/{}/logs", refused["id"])).await["logs"][0];
    assert_eq!(refused_log["outcome"], "connection_error");
    assert!(refused_log["error"].as_str().unwrap().to_lowercase().contains("connect"), "{refused_log}");
}

async fn disabling_a_handler_cancels_its_pending_deliveries(db: TestDb) {
    let app = TestApp::with_retries(db, "30s").await;
    let sink = Sink::start().await;
    sink.behave("/h", Behavior { statuses: [500].into(), ..Behavior::default() });
    let handler = app.create_handler(http_handler("h", "clients.create", &sink.url("/h"), 1)).await;
    let id = handler["id"].as_i64().unwrap();
    let (_, answer) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    let event_path = format!("/api/v1/events/{}", answer["id"]);
    app.api_until(&event_path, "a retry waiting", |e| {
        e["deliveries"][0]["attempts"] == 1 && e["deliveries"][0]["state"] == "pending"
    })
    .await;
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{id}"))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let event = app.api_json(&event_path).await;
    assert_eq!(event["deliveries"][0]["state"], "cancelled", "cancelled at once");
    let logs = app.api_json(&format!("/api/v1/handlers/{id}/logs")).await;
    assert_eq!(logs["logs"][0]["outcome"], "cancelled", "and logged as cancelled");
    // While disabled, events make no delivery for it.
    let (_, answer) = app.post_event(&envelope("clients.create", json!(2), json!({}))).await;
    assert_eq!(answer["deliveries"], 0);
    // Through the UI too: archiving cancels.
    app.api(Method::PATCH, &format!("/api/v1/handlers/{id}")).json(&json!({"status": "enabled"})).send().await.unwrap();
    let (_, answer) = app.post_event(&envelope("clients.create", json!(3), json!({}))).await;
    let event_path = format!("/api/v1/events/{}", answer["id"]);
    sink.wait_for("/h", 2, WAIT).await;
    sink.behave("/h", Behavior { statuses: [500].into(), ..Behavior::default() });
    let (_, answer) = app.post_event(&envelope("clients.create", json!(4), json!({}))).await;
    let event_path4 = format!("/api/v1/events/{}", answer["id"]);
    app.api_until(&event_path4, "a retry waiting", |e| e["deliveries"][0]["attempts"] == 1).await;
    let csrf = app.sign_in().await;
    let res =
        app.post_form(&format!("/provisioning/{id}/status"), &[("csrf_token", &csrf), ("status", "archived")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.api_json(&event_path4).await["deliveries"][0]["state"], "cancelled");
    assert_eq!(
        app.api_json(&event_path).await["deliveries"][0]["state"],
        "succeeded",
        "finished deliveries stay as they were"
    );
}

async fn a_new_or_edited_handler_applies_to_the_next_event(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    let handler = app.create_handler(http_handler("new", "clients.archive", &sink.url("/first"), 1)).await;
    let (_, answer) = app.post_event(&envelope("clients.archive", json!(9), json!({}))).await;
    assert_eq!(answer["deliveries"], 1, "created a moment ago, it gets the next event");
    sink.wait_for("/first", 1, WAIT).await;
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{}", handler["id"]))
        .json(&json!({"target": sink.url("/second")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    app.post_event(&envelope("clients.archive", json!(9), json!({}))).await;
    sink.wait_for("/second", 1, WAIT).await;
    assert_eq!(sink.received_on("/first").len(), 1, "the edit applied at once");
}

async fn a_finished_delivery_can_be_retried_by_hand(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/h", Behavior { statuses: [500].into(), ..Behavior::default() });
    let handler = app.create_handler(http_handler("h", "clients.create", &sink.url("/h"), 1)).await;
    let (_, answer) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    let event_path = format!("/api/v1/events/{}", answer["id"]);
    let event = app.api_until(&event_path, "failed", |e| e["deliveries"][0]["state"] == "failed").await;
    let delivery = event["deliveries"][0]["id"].as_i64().unwrap();
    let res = app.api(Method::POST, &format!("/api/v1/deliveries/{delivery}/retry")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    app.api_until(&event_path, "succeeded", |e| e["deliveries"][0]["state"] == "succeeded").await;
    let got = sink.wait_for("/h", 2, WAIT).await;
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", handler["id"])).await;
    assert_eq!(logs["logs"][0]["attempt"], 2);
    assert_eq!(logs["logs"][0]["outcome"], "success");
    let res = app.api(Method::POST, "/api/v1/deliveries/999999/retry").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // One that is still waiting cannot be retried.
    sink.behave("/h", Behavior { delay: Duration::from_secs(2), ..Behavior::default() });
    let (_, answer) = app.post_event(&envelope("clients.create", json!(2), json!({}))).await;
    let event = app.api_json(&format!("/api/v1/events/{}", answer["id"])).await;
    let pending = event["deliveries"][0]["id"].as_i64().unwrap();
    let res = app.api(Method::POST, &format!("/api/v1/deliveries/{pending}/retry")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CONFLICT);
}

async fn a_stop_lets_attempts_in_flight_finish(db: TestDb) {
    let mut app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/slow", Behavior { delay: Duration::from_millis(800), ..Behavior::default() });
    let handler = app.create_handler(http_handler("slow", "clients.create", &sink.url("/slow"), 1)).await;
    let logs_path = format!("/api/v1/handlers/{}/logs", handler["id"]);
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    // Once the attempt is on its way, stop as SIGTERM would.
    sink.wait_arrivals(1, WAIT).await;
    assert_eq!(app.api_json(&logs_path).await["logs"], json!([]), "not recorded yet: the attempt is in flight");
    let stopping = std::time::Instant::now();
    app.stop().await;
    assert_eq!(sink.received_on("/slow").len(), 1, "the attempt was let finish, not cut off");
    assert!(stopping.elapsed() >= Duration::from_millis(500), "the stop waited for it");
}

async fn deleting_a_handler_mid_attempt_leaves_the_others_working(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/doomed", Behavior { delay: Duration::from_millis(500), ..Behavior::default() });
    let doomed = app.create_handler(http_handler("doomed", "clients.create", &sink.url("/doomed"), 1)).await;
    let other = app.create_handler(http_handler("other", "clients.update", &sink.url("/other"), 1)).await;
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    sink.wait_arrivals(1, WAIT).await;
    let res = app.api(Method::DELETE, &format!("/api/v1/handlers/{}", doomed["id"])).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    sink.wait_for("/doomed", 1, WAIT).await;
    let (_, answer) = app.post_event(&envelope("clients.update", json!(1), json!({}))).await;
    app.api_until(&format!("/api/v1/events/{}", answer["id"]), "success", |e| {
        e["deliveries"][0]["state"] == "succeeded"
    })
    .await;
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", other["id"])).await;
    assert_eq!(logs["logs"][0]["outcome"], "success", "recording goes on after the deleted handler's attempt");
}

/// Verifies a received call with the Standard Webhooks reference library.
fn reference_verifies(secret: &str, got: &crate::sink::Received) -> bool {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, got.headers[name].parse().unwrap());
    }
    standardwebhooks::Webhook::new(secret).unwrap().verify(got.body.as_bytes(), &headers).is_ok()
}

async fn a_rotated_secret_signs_beside_the_new_one_for_the_overlap(db: TestDb) {
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| {
        s.secret_overlap = std::time::Duration::from_millis(1500);
    })
    .await;
    let sink = Sink::start().await;
    let handler = app.create_handler(http_handler("crm", "clients.create", &sink.url("/crm"), 0)).await;
    let old = handler["secret"].as_str().unwrap().to_owned();
    let res =
        app.api(reqwest::Method::POST, &format!("/api/v1/handlers/{}/secret", handler["id"])).send().await.unwrap();
    let rotated: Value = res.json().await.unwrap();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");

    // Within the overlap: both sign, and each verifies with the reference library.
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    let got = sink.wait_for("/crm", 1, Duration::from_secs(10)).await.remove(0);
    let header = &got.headers["webhook-signature"];
    assert_eq!(header.split(' ').count(), 2, "{header}");
    assert!(reference_verifies(&new, &got), "the new secret verifies");
    assert!(reference_verifies(&old, &got), "the old secret verifies during the overlap");

    // After it: the new one alone.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    app.post_event(&envelope("clients.create", json!(2), json!({}))).await;
    let got = sink.wait_for("/crm", 2, Duration::from_secs(10)).await.remove(1);
    assert_eq!(got.headers["webhook-signature"].split(' ').count(), 1);
    assert!(reference_verifies(&new, &got));
    assert!(!reference_verifies(&old, &got), "the old secret no longer signs");
    let after: Value = app.api_json(&format!("/api/v1/handlers/{}", handler["id"])).await;
    assert!(after["previous_secret_until"].is_null(), "{after}");
}

/// Verifies a `v1a` signature of a received call with the handler's public key.
fn ed25519_verifies(public_key: &str, got: &crate::sink::Received) -> bool {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let key: [u8; 32] = STANDARD.decode(public_key.strip_prefix("whpk_").unwrap()).unwrap().try_into().unwrap();
    let key = VerifyingKey::from_bytes(&key).unwrap();
    let message = format!("{}.{}.{}", got.headers["webhook-id"], got.headers["webhook-timestamp"], got.body);
    got.headers["webhook-signature"].split(' ').filter_map(|s| s.strip_prefix("v1a,")).any(|sig| {
        let sig = Signature::from_slice(&STANDARD.decode(sig).unwrap()).unwrap();
        key.verify(message.as_bytes(), &sig).is_ok()
    })
}

async fn a_v1a_handler_signs_with_ed25519_and_shows_its_public_key(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let sink = Sink::start().await;
    let mut body = http_handler("asym", "clients.create", &sink.url("/asym"), 0);
    body["signature"] = json!("v1a");
    let handler = app.create_handler(body).await;
    assert_eq!(handler["signature"], "v1a");
    assert!(handler["secret"].as_str().unwrap().starts_with("whsk_"), "{handler}");
    let public = handler["public_key"].as_str().unwrap().to_owned();
    assert!(public.starts_with("whpk_"));

    app.post_event(&envelope("clients.create", json!(1), json!({"n": 1}))).await;
    let got = sink.wait_for("/asym", 1, Duration::from_secs(10)).await.remove(0);
    assert!(got.headers["webhook-signature"].starts_with("v1a,"), "{:?}", got.headers);
    assert!(ed25519_verifies(&public, &got), "the public key verifies the call");
    let mut forged = got.clone();
    forged.body = forged.body.replace("\"n\":1", "\"n\":2");
    assert!(!ed25519_verifies(&public, &forged));

    // The public key is on the edit page, for every role; the signing key only for admins.
    let page = app.get_page(&format!("/provisioning/{}/edit", handler["id"])).await;
    assert!(page.contains(&public) && page.contains(r#"<option value="v1a" selected>"#));
    app.create_user(&csrf, "vera", "viewer password 1", "viewer").await;
    let viewer = app.browser("vera", "viewer password 1").await;
    let page = viewer.get_page(&format!("/provisioning/{}/edit", handler["id"])).await;
    assert!(page.contains(&public) && !page.contains(handler["secret"].as_str().unwrap()));

    // Back to v1: a new shared secret; the key signs beside it for the overlap.
    let res = app
        .api(reqwest::Method::PATCH, &format!("/api/v1/handlers/{}", handler["id"]))
        .json(&json!({"signature": "v1"}))
        .send()
        .await
        .unwrap();
    let v1: Value = res.json().await.unwrap();
    assert_eq!(v1["signature"], "v1");
    assert!(v1["public_key"].is_null());
    let secret = v1["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    app.post_event(&envelope("clients.create", json!(2), json!({}))).await;
    let got = sink.wait_for("/asym", 2, Duration::from_secs(10)).await.remove(1);
    assert!(reference_verifies(&secret, &got), "the new shared secret verifies");
    assert!(ed25519_verifies(&public, &got), "the old key still signs during the overlap");
    let bad = app
        .api(reqwest::Method::PATCH, &format!("/api/v1/handlers/{}", handler["id"]))
        .json(&json!({"signature": "rsa"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

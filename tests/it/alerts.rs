//! Alerts and auto-disable (DESIGN §8.6): a handler failing in a row raises
//! `handler.failing`, one failing for too long is disabled (`handler.disabled`,
//! audited), a success after a run raises `handler.recovered`, a delivery's
//! last failed attempt `delivery.exhausted` — each once per handler within the
//! window, POSTed signed (verified with the Standard Webhooks library), shown
//! on the handler list and the alerts page; an alert endpoint that fails holds
//! up no delivery.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Received, Sink},
};

on_both_backends!(
    a_handler_failing_for_too_long_is_disabled_with_signed_alerts,
    a_handler_that_succeeds_again_raises_recovered,
    an_alert_endpoint_that_fails_holds_up_no_delivery,
    an_endpoint_gone_raises_handler_disabled
);

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A server sending alerts to the sink's `/alerts`: `failing_after` failures
/// in a row raise `handler.failing`; disabled after `auto_disable`.
async fn alerting(db: TestDb, sink: &Sink, failing_after: u32, auto_disable: Duration) -> TestApp {
    let url = sink.url("/alerts");
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), move |s| {
        s.alert_url = Some(url);
        s.alert_secret = Some(SECRET.into());
        s.alert_failing_after = failing_after;
        s.auto_disable_after = auto_disable;
        s.retry_schedule = provisiond::domain::RetrySchedule::parse("200ms,200ms,200ms,200ms,200ms").unwrap();
    })
    .await;
    app.sign_in().await;
    app
}

/// The alert's body, after its signature is verified with the reference library.
fn verified(alert: &Received) -> Value {
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, alert.headers[name].parse().unwrap());
    }
    let verifier = standardwebhooks::Webhook::new(SECRET).unwrap();
    verifier.verify(alert.body.as_bytes(), &headers).expect("the alert's signature verifies");
    alert.json()
}

/// The alerts of `kind` the sink got so far, verified.
fn alerts_of(sink: &Sink, kind: &str) -> Vec<Value> {
    sink.received_on("/alerts").iter().map(verified).filter(|a| a["type"] == kind).collect()
}

async fn wait_for_alert(sink: &Sink, kind: &str) -> Value {
    let what = format!("a {kind} alert");
    sink.wait_until(Duration::from_secs(20), &what, |r| {
        r.iter().any(|x| x.path == "/alerts" && x.body.contains(&format!("\"type\":\"{kind}\"")))
    })
    .await;
    alerts_of(sink, kind).remove(0)
}

async fn a_handler_failing_for_too_long_is_disabled_with_signed_alerts(db: TestDb) {
    let sink = Sink::start().await;
    let app = alerting(db, &sink, 3, Duration::from_secs(2)).await;
    sink.behave("/down", Behavior { statuses: std::iter::repeat_n(500, 10_000).collect(), ..Behavior::default() });
    let handler = app.create_handler(http_handler("Billing CRM", "clients.create", &sink.url("/down"), 1)).await;
    let id = handler["id"].as_i64().unwrap();
    // An event every 100 ms: attempts go on failing, past the two seconds.
    let (poster, stop) = {
        let (app_url, stop) =
            (app.url("/api/v1/events"), std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)));
        let stopped = stop.clone();
        let poster = tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..100 {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let body = envelope("clients.create", json!(n), json!({"n": n}));
                let res =
                    client.post(&app_url).bearer_auth(crate::helpers::API_TOKEN).json(&body).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::ACCEPTED);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (poster, stop)
    };

    let failing = wait_for_alert(&sink, "handler.failing").await;
    assert_eq!(failing["handler"], json!({"id": id, "name": "Billing CRM"}));
    assert!(failing["failures"].as_i64().unwrap() >= 3, "{failing}");
    assert!(failing["message"].as_str().unwrap().contains("in a row"), "{failing}");
    assert!(failing["at"].as_str().unwrap().ends_with('Z'));

    let disabled = wait_for_alert(&sink, "handler.disabled").await;
    assert_eq!(disabled["handler"]["id"], json!(id));
    assert!(disabled["message"].as_str().unwrap().contains("every attempt has failed since"), "{disabled}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poster.await.unwrap();
    assert_eq!(app.api_json(&format!("/api/v1/handlers/{id}")).await["status"], "disabled");
    app.settled().await;
    let audit = app.api_json("/api/v1/audit?action=handler.auto_disabled").await;
    assert_eq!(audit["entries"][0]["actor"], "provisiond", "{audit}");

    // Each kind once for the handler, however many deliveries failed for good.
    assert_eq!(alerts_of(&sink, "handler.failing").len(), 1);
    assert_eq!(alerts_of(&sink, "handler.disabled").len(), 1);
    assert!(alerts_of(&sink, "delivery.exhausted").len() <= 1);

    // The list says so above its rows; the alerts page lists them, sent.
    let list = app.get_page("/provisioning").await;
    assert!(list.contains("Billing CRM</a> was disabled automatically at"), "{list}");
    let page = app.get_page("/provisioning/alerts").await;
    assert!(page.contains("handler.disabled") && page.contains("handler.failing"), "{page}");
    assert!(page.contains("sent 20"), "{page}");

    // Enabled again, it starts afresh: not disabled at its next failure, off the banner.
    let res =
        app.api(Method::PATCH, &format!("/api/v1/handlers/{id}")).json(&json!({"status": "enabled"})).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    let (status, _) = app.post_event(&envelope("clients.create", json!(9), json!({"n": 9}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.api_json(&format!("/api/v1/handlers/{id}")).await["status"], "enabled");
    assert!(!app.get_page("/provisioning").await.contains("was disabled automatically"));
}

async fn a_handler_that_succeeds_again_raises_recovered(db: TestDb) {
    let sink = Sink::start().await;
    let app = alerting(db, &sink, 2, Duration::ZERO).await;
    // Five failures, each after 300 ms, then it answers again.
    let slow = Duration::from_millis(300);
    sink.behave("/flaky", Behavior { statuses: [503; 5].into(), delay: slow, ..Behavior::default() });
    let handler = app.create_handler(http_handler("Flaky", "clients.create", &sink.url("/flaky"), 1)).await;
    let id = handler["id"].as_i64().unwrap();
    let (status, _) = app.post_event(&envelope("clients.create", json!(1), json!({"n": 1}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The list says so while it lasts.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let list = app.get_page("/provisioning").await;
        if list.contains("Flaky</a> is failing: ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no banner: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failing = wait_for_alert(&sink, "handler.failing").await;
    assert_eq!(failing["handler"]["id"], json!(id));

    let recovered = wait_for_alert(&sink, "handler.recovered").await;
    assert_eq!(recovered["handler"], json!({"id": id, "name": "Flaky"}));
    assert_eq!(app.api_json(&format!("/api/v1/handlers/{id}")).await["status"], "enabled", "0: never disabled");
    assert!(!app.get_page("/provisioning").await.contains("is failing"), "off the banner once it succeeds");
    assert!(alerts_of(&sink, "delivery.exhausted").is_empty(), "its delivery succeeded in the end");
}

async fn an_alert_endpoint_that_fails_holds_up_no_delivery(db: TestDb) {
    let sink = Sink::start().await;
    // The alert endpoint answers slowly, and 500.
    sink.behave(
        "/alerts",
        Behavior {
            statuses: std::iter::repeat_n(500, 100).collect(),
            delay: Duration::from_secs(2),
            ..Behavior::default()
        },
    );
    let app = alerting(db, &sink, 1, Duration::ZERO).await;
    sink.behave("/down", Behavior { statuses: std::iter::repeat_n(500, 100).collect(), ..Behavior::default() });
    app.create_handler(http_handler("down", "clients.create", &sink.url("/down"), 1)).await;
    app.create_handler(http_handler("well", "clients.update", &sink.url("/well"), 1)).await;
    let (status, _) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sink.wait_until(Duration::from_secs(10), "the first alert's attempt", |r| r.iter().any(|x| x.path == "/alerts"))
        .await;
    for n in 0..20 {
        let (status, _) = app.post_event(&envelope("clients.update", json!(n), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    sink.wait_for("/well", 20, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let page = app.get_page("/provisioning/alerts").await;
    assert!(page.contains("after 1 attempt: answered 500"), "{page}");
}

async fn an_endpoint_gone_raises_handler_disabled(db: TestDb) {
    let sink = Sink::start().await;
    // A failure in a row is "failing" here, but a gone endpoint is disabled, not failing.
    let app = alerting(db, &sink, 1, Duration::ZERO).await;
    sink.behave("/gone", Behavior { statuses: [410].into(), ..Behavior::default() });
    let handler = app.create_handler(http_handler("Old CRM", "clients.create", &sink.url("/gone"), 1)).await;
    let (status, _) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let disabled = wait_for_alert(&sink, "handler.disabled").await;
    assert_eq!(disabled["handler"]["id"], handler["id"]);
    assert!(disabled["message"].as_str().unwrap().contains("410 Gone"), "{disabled}");
    app.settled().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(alerts_of(&sink, "handler.failing").is_empty(), "no stray handler.failing beside handler.disabled");
    assert!(!app.get_page("/provisioning").await.contains("is failing"));
}

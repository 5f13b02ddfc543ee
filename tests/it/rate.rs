//! Rate limits (DESIGN §8.1): a handler limited to N attempts a second gets
//! N a second — evenly spaced, never a burst — while an unlimited one beside
//! it goes at full speed; processes sharing a PostgreSQL database share the
//! one limit; the field is read, refused and shown like the others.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use crate::{
    dispatch::{envelope, http_handler},
    durability::Server,
    helpers::{API_TOKEN, Backend, TestApp, TestDb},
    on_both_backends,
    sink::{Received, Sink},
};

on_both_backends!(
    a_rate_limited_handler_gets_its_rate_beside_an_unlimited_one,
    a_paused_rate_limited_handler_drains_its_backlog_at_its_rate_in_order,
    the_rate_limit_is_a_field_of_the_form_and_the_api
);

/// The rate `arrived` came at: intervals over the time from the first to the
/// last; and the most that arrived within any one second.
fn rate_of(arrived: &[Received]) -> (f64, usize) {
    let mut at: Vec<Instant> = arrived.iter().map(|r| r.started).collect();
    at.sort();
    let span = at.last().unwrap().duration_since(at[0]).as_secs_f64();
    let busiest = at
        .iter()
        .map(|t| at.iter().filter(|u| **u >= *t && u.duration_since(*t) < Duration::from_secs(1)).count())
        .max();
    ((at.len() - 1) as f64 / span, busiest.unwrap_or(0))
}

fn assert_near(rate: f64, limit: f64, what: &str) {
    assert!((rate - limit).abs() <= limit * 0.1, "{what}: {rate:.2} attempts/s for a limit of {limit}");
}

/// No more within a second than the limit allows, give or take 10 % (an
/// attempt started late on a busy machine arrives beside the next).
fn assert_no_burst(busiest: usize, limit: f64) {
    let most = (limit * 1.1).ceil() as usize + 1;
    assert!(busiest <= most, "a burst: {busiest} within one second for a limit of {limit}");
}

/// Each of `objects` objects (ids 0, 1, …) got its `each` events, in the
/// order they were posted (`data.n` rising).
fn assert_in_order_per_object(arrived: &[Received], objects: i64, each: usize) {
    for object in 0..objects {
        let ns: Vec<i64> = arrived
            .iter()
            .map(|r| r.json())
            .filter(|j| j["event"]["object_id"] == json!(object))
            .map(|j| j["data"]["n"].as_i64().unwrap())
            .collect();
        assert_eq!(ns.len(), each, "object {object}: {ns:?}");
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "object {object} in order: {ns:?}");
    }
}

async fn a_rate_limited_handler_gets_its_rate_beside_an_unlimited_one(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    let mut limited = http_handler("limited", "clients.create", &sink.url("/limited"), 1);
    limited["rate_limit"] = json!(20);
    let limited = app.create_handler(limited).await;
    assert_eq!(limited["rate_limit"], json!(20.0));
    app.create_handler(http_handler("free", "clients.update", &sink.url("/free"), 1)).await;

    let started = Instant::now();
    for n in 0..60 {
        for event in ["clients.create", "clients.update"] {
            let (status, _) = app.post_event(&envelope(event, json!(n % 6), json!({"n": n}))).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
    }
    let free = sink.wait_for("/free", 60, Duration::from_secs(10)).await;
    let last = |arrived: &[Received]| arrived.iter().map(|r| r.started.duration_since(started)).max().unwrap();
    let free_took = last(&free);
    let limited = sink.wait_for("/limited", 60, Duration::from_secs(20)).await;
    let limited: Vec<Received> = limited.into_iter().filter(|r| r.path == "/limited").collect();
    let (rate, busiest) = rate_of(&limited);
    assert_near(rate, 20.0, "the limited handler");
    assert_no_burst(busiest, 20.0);
    // 60 at 20 a second take three seconds; the unlimited one did not wait for them.
    let limited_took = last(&limited);
    assert!(
        free_took + Duration::from_secs(1) < limited_took,
        "the unlimited handler went at its own pace: all in {free_took:?}, the limited one's in {limited_took:?}"
    );
    assert_in_order_per_object(&limited, 6, 10);
}

async fn a_paused_rate_limited_handler_drains_its_backlog_at_its_rate_in_order(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    let mut handler = http_handler("limited", "clients.create", &sink.url("/limited"), 1);
    handler["rate_limit"] = json!("12.5");
    handler["status"] = json!("paused");
    let id = app.create_handler(handler).await["id"].as_i64().unwrap();
    for n in 0..40 {
        let (status, _) = app.post_event(&envelope("clients.create", json!(n % 4), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.received_on("/limited").is_empty(), "nothing attempted while paused");
    let res =
        app.api(Method::PATCH, &format!("/api/v1/handlers/{id}")).json(&json!({"status": "enabled"})).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::OK);
    let drained = sink.wait_for("/limited", 40, Duration::from_secs(20)).await;
    let (rate, _) = rate_of(&drained);
    assert_near(rate, 12.5, "the backlog");
    assert_in_order_per_object(&drained, 4, 10);
}

async fn the_rate_limit_is_a_field_of_the_form_and_the_api(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    for bad in [json!(0.05), json!(10001), json!("fast"), json!("1e3"), json!(true), json!("5\u{0}")] {
        let mut body = http_handler("h", "clients.create", "http://127.0.0.1:9/x", 1);
        body["rate_limit"] = bad.clone();
        let res = app.api(Method::POST, "/api/v1/handlers").json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        let errors: serde_json::Value = res.json().await.unwrap();
        assert!(errors["errors"]["rate_limit"].is_string(), "{bad}: {errors}");
    }
    let mut body = http_handler("h", "clients.create", "http://127.0.0.1:9/x", 1);
    body["rate_limit"] = json!("0.5");
    let created = app.create_handler(body).await;
    assert_eq!(created["rate_limit"], json!(0.5));
    let id = created["id"].as_i64().unwrap();

    // The form shows it as written, refuses what is out of bounds beside the field, and blank lifts it.
    let page = app.get_page(&format!("/provisioning/{id}/edit")).await;
    assert!(page.contains(r#"name="rate_limit" value="0.5""#), "{page}");
    assert!(app.get_page("/provisioning").await.contains("at most 0.5/s"), "the list shows it");
    let mut form = vec![
        ("name", "h"),
        ("events_id", "clients.create"),
        ("type", "http"),
        ("target", "http://127.0.0.1:9/x"),
        ("status", "enabled"),
        ("priority", "1"),
        ("timeout_ms", "10000"),
        ("rate_limit", "20000"),
        ("csrf_token", &csrf),
    ];
    let res = app.post_form(&format!("/provisioning/{id}"), &form).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert!(page.contains("from 0.1 to 10000"), "{page}");
    form.retain(|(k, _)| *k != "rate_limit");
    form.push(("rate_limit", ""));
    let res = app.post_form(&format!("/provisioning/{id}"), &form).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.api_json(&format!("/api/v1/handlers/{id}")).await["rate_limit"], json!(null));
}

/// Two processes on one PostgreSQL database, each claiming: the handler's
/// limit holds for the two together, not for each.
#[tokio::test]
async fn two_instances_share_one_rate_limit() {
    let Some(db) = TestDb::new(Backend::Postgres) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let (a, b) = tokio::join!(Server::start(&db, dir.path(), "a"), Server::start(&db, dir.path(), "b"));
    let client = reqwest::Client::new();
    let mut handler = http_handler("limited", "clients.create", &sink.url("/limited"), 1);
    handler["rate_limit"] = json!(25);
    let res = client.post(format!("{}/api/v1/handlers", a.address)).bearer_auth(API_TOKEN).json(&handler).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::CREATED);
    // Events about 100 objects, posted to both: neither process waits on the other's.
    for n in 0..100 {
        let server = if n % 2 == 0 { &a } else { &b };
        let res = client
            .post(format!("{}/api/v1/events", server.address))
            .bearer_auth(API_TOKEN)
            .json(&envelope("clients.create", json!(n), json!({"n": n})))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
    }
    let arrived = sink.wait_for("/limited", 100, Duration::from_secs(30)).await;
    let (rate, busiest) = rate_of(&arrived);
    assert_near(rate, 25.0, "two processes together");
    assert_no_burst(busiest, 25.0);
    let claimed = |address: String| {
        let client = client.clone();
        async move {
            let text = client.get(format!("{address}/metrics")).bearer_auth(API_TOKEN).send().await.unwrap();
            let text = text.text().await.unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("provisiond_claimed_total "))
                .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
        }
    };
    let (by_a, by_b) = (claimed(a.address.clone()).await, claimed(b.address.clone()).await);
    assert!(by_a > 0.0 && by_b > 0.0, "both processes attempted some: {by_a} and {by_b}");
    assert_eq!(by_a + by_b, 100.0, "each delivery attempted once");
}

//! The deliveries list (DESIGN §8.5): one row per delivery, where it stands
//! (pending, waiting on its chain or its object, in flight, retrying at T,
//! succeeded, failed, cancelled), its last outcome, filters and pages.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    each_delivery_says_where_it_stands,
    the_list_filters_and_pages,
    the_logs_say_when_a_failed_attempts_delivery_succeeded_later,
    every_event_is_listed_with_its_deliveries_even_those_no_handler_matched,
);

fn states_of(list: &Value, handler: &Value) -> Vec<String> {
    let mut states: Vec<String> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["handler_id"] == handler["id"])
        .map(|d| d["state"].as_str().unwrap().to_owned())
        .collect();
    states.sort();
    states
}

async fn each_delivery_says_where_it_stands(db: TestDb) {
    let app = TestApp::with_retries(db, "1h").await;
    let sink = Sink::start().await;
    sink.behave("/slow", Behavior { delay: Duration::from_secs(30), ..Behavior::default() });
    sink.behave("/down", Behavior { statuses: [500].into(), ..Behavior::default() });
    // A slow head of a chain: its first delivery in flight, its second (same
    // object) waiting on its object; the handler after it waiting on its chain.
    let mut slow = http_handler("slow", "clients.create", &sink.url("/slow"), 1);
    slow["timeout_ms"] = json!(30000);
    let slow = app.create_handler(slow).await;
    let after = app.create_handler(http_handler("after", "clients.create", &sink.url("/after"), 2)).await;
    let down = app.create_handler(http_handler("down", "clients.update", &sink.url("/down"), 1)).await;
    let ok = app.create_handler(http_handler("ok", "clients.delete", &sink.url("/ok"), 1)).await;
    for (event, object) in [("clients.create", 7), ("clients.create", 7), ("clients.update", 8), ("clients.delete", 9)]
    {
        let (status, _) = app.post_event(&envelope(event, json!(object), json!({}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let list = app
        .api_until("/api/v1/deliveries", "the slow one in flight, the failure and the success recorded", |l| {
            states_of(l, &slow) == ["in_flight", "waiting"]
                && states_of(l, &down) == ["retrying"]
                && states_of(l, &ok) == ["succeeded"]
        })
        .await;
    assert_eq!(states_of(&list, &after), ["waiting", "waiting"]);
    let retrying = list["deliveries"].as_array().unwrap().iter().find(|d| d["handler_id"] == down["id"]).unwrap();
    assert_eq!(retrying["last_outcome"], "http_error");
    assert_eq!(retrying["last_status_code"], 500);
    assert_eq!(retrying["attempts"], 1);
    assert!(retrying["next_attempt_at"].as_str().unwrap().ends_with('Z'), "retrying at a time: {retrying}");
    assert_eq!(retrying["handler_name"], "down");
    assert_eq!(retrying["events_id"], "clients.update");

    // Disabling the slow head cancels its waiting delivery; the page says it all in words.
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{}", after["id"]))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let list = app.api_json("/api/v1/deliveries").await;
    assert_eq!(states_of(&list, &after), ["cancelled", "cancelled"]);
    app.sign_in().await;
    let page = app.get_page("/provisioning/deliveries").await;
    for words in ["in flight", "waiting on its chain or its object", "retrying at ", "succeeded", "cancelled"] {
        assert!(page.contains(words), "the page says {words}");
    }
    assert!(page.contains(r#"<a href="/provisioning/deliveries" aria-current="page">Deliveries</a>"#));
}

async fn the_list_filters_and_pages(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/down", Behavior { statuses: [500, 500, 500].into(), ..Behavior::default() });
    let down = app.create_handler(http_handler("down", "clients.update", &sink.url("/down"), 1)).await;
    let up = app.create_handler(http_handler("up", "clients.create", &sink.url("/up"), 1)).await;
    for n in 0..3 {
        app.post_event(&envelope("clients.update", json!(n), json!({}))).await;
        app.post_event(&envelope("clients.create", json!(n), json!({}))).await;
    }
    app.settled().await;
    let ids = |list: &Value| -> Vec<i64> {
        list["deliveries"].as_array().unwrap().iter().map(|d| d["id"].as_i64().unwrap()).collect()
    };
    let failing = app.api_json("/api/v1/deliveries?state=failing").await;
    assert_eq!(ids(&failing).len(), 3);
    assert!(
        failing["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["handler_id"] == down["id"] && d["state"] == "failed")
    );
    let by_handler = app.api_json(&format!("/api/v1/deliveries?handler_id={}", up["id"])).await;
    assert_eq!(ids(&by_handler).len(), 3);
    let by_event = app.api_json("/api/v1/deliveries?event=clients.create&state=succeeded").await;
    assert_eq!(ids(&by_event), ids(&by_handler));
    let by_object = app.api_json("/api/v1/deliveries?object_id=2").await;
    assert_eq!(ids(&by_object).len(), 2);
    let all = app.api_json("/api/v1/deliveries").await;
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 6);
    assert!(all_ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert_eq!(all["more"], false);
    // Keyset pages: two at a time, none lost or repeated.
    let mut seen = Vec::new();
    let mut path = "/api/v1/deliveries?limit=2".to_owned();
    loop {
        let page = app.api_json(&path).await;
        seen.extend(ids(&page));
        if page["more"] == false {
            break;
        }
        path = format!("/api/v1/deliveries?limit=2&before={}", seen.last().unwrap());
    }
    assert_eq!(seen, all_ids);
    let later = app.api_json("/api/v1/deliveries?from=2999-01-01").await;
    assert!(ids(&later).is_empty());
    // Bad filters are named.
    for (query, field) in [
        ("state=stuck", "state"),
        ("handler_id=x", "handler_id"),
        ("event=nope", "event"),
        ("to=soon", "to"),
        ("limit=0", "limit"),
    ] {
        let res = app.api(Method::GET, &format!("/api/v1/deliveries?{query}")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        let body: Value = res.json().await.unwrap();
        assert!(body["errors"][field].is_string(), "{query}: {body}");
    }
    app.sign_in().await;
    let page = app.get_page("/provisioning/deliveries?state=failing").await;
    assert_eq!(page.matches("<tr class=\"delivery-failed\">").count(), 3);
    assert!(page.contains(r#"<option value="failing" selected>"#));
    assert_eq!(app.get("/provisioning/deliveries?state=stuck").await.status(), StatusCode::BAD_REQUEST);
}

async fn the_logs_say_when_a_failed_attempts_delivery_succeeded_later(db: TestDb) {
    let app = TestApp::with_retries(db, "100ms").await;
    let sink = Sink::start().await;
    sink.behave("/flaky", Behavior { statuses: [503].into(), ..Behavior::default() });
    sink.behave("/down", Behavior { statuses: [500, 500].into(), ..Behavior::default() });
    app.create_handler(http_handler("flaky", "clients.create", &sink.url("/flaky"), 1)).await;
    app.create_handler(http_handler("down", "clients.update", &sink.url("/down"), 1)).await;
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    app.post_event(&envelope("clients.update", json!(2), json!({}))).await;
    app.settled().await;
    app.sign_in().await;
    let page = app.get_page("/provisioning/logs").await;
    assert_eq!(page.matches("delivery later succeeded</span>").count(), 1, "only flaky's failure was made good");
    let succeeded = app.get_page("/provisioning/logs?delivery=succeeded").await;
    assert!(succeeded.contains("flaky") && !succeeded.contains(">down<"), "{succeeded}");
    let failing = app.get_page("/provisioning/logs?delivery=failing").await;
    assert!(failing.contains(">down<") && !failing.contains(">flaky<"), "{failing}");
    assert!(failing.contains(r#"<option value="failing" selected>"#));
    assert_eq!(app.get("/provisioning/logs?delivery=stuck").await.status(), StatusCode::BAD_REQUEST);
}

async fn every_event_is_listed_with_its_deliveries_even_those_no_handler_matched(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("a", "clients.create", &sink.url("/a"), 1)).await;
    app.create_handler(http_handler("b", "clients.create", &sink.url("/b"), 2)).await;
    let (_, matched) = app.post_event(&envelope("clients.create", json!(12), json!({}))).await;
    let (_, unmatched) = app.post_event(&envelope("accounting.payments.create", json!(99), json!({}))).await;
    app.settled().await;
    app.sign_in().await;
    let page = app.get_page("/provisioning/events").await;
    assert_eq!(page.matches("<tr class=\"event-row\">").count(), 2);
    assert!(page.contains("no handler matched"), "the event nobody handled is listed");
    let link = format!("/provisioning/deliveries?event_id={}", matched["id"]);
    assert!(page.contains(&format!("<a href=\"{link}\">2 deliveries</a>")), "{page}");
    let deliveries = app.get_page(&link).await;
    assert_eq!(deliveries.matches("<tr class=\"delivery-succeeded\">").count(), 2);
    let api = app.api_json(&format!("/api/v1/deliveries?event_id={}", matched["id"])).await;
    assert_eq!(api["deliveries"].as_array().unwrap().len(), 2);
    let empty = app.api_json(&format!("/api/v1/deliveries?event_id={}", unmatched["id"])).await;
    assert!(empty["deliveries"].as_array().unwrap().is_empty());
    // Filters.
    let by_event = app.get_page("/provisioning/events?event=accounting.payments.create").await;
    assert_eq!(by_event.matches("<tr class=\"event-row\">").count(), 1);
    assert!(by_event.contains("no handler matched"));
    let by_object = app.get_page("/provisioning/events?object_id=12").await;
    assert_eq!(by_object.matches("<tr class=\"event-row\">").count(), 1);
    assert!(app.get_page("/provisioning/events?from=2999-01-01").await.contains("No events match these filters."));
    assert_eq!(app.get("/provisioning/events?event=nope").await.status(), StatusCode::BAD_REQUEST);
}

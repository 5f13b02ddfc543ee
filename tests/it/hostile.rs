//! Hostile bytes: NUL bytes and invalid UTF-8 in a handler's answer or a
//! script's output, a NUL in a posted object id or in a filter. Each is
//! stored as shown or refused with a 4xx naming it; none fails another
//! request or holds up a delivery.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{API_TOKEN, TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    nul_bytes_in_an_answer_are_recorded_as_shown_and_the_chain_goes_on,
    nul_bytes_in_a_scripts_output_are_recorded_as_shown,
    a_nul_in_an_object_id_is_refused_alone,
    a_nul_in_a_filter_is_a_400,
    an_idempotency_key_used_for_another_body_is_refused,
);

async fn nul_bytes_in_an_answer_are_recorded_as_shown_and_the_chain_goes_on(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/nul", Behavior { body: Some(b"{\"ok\":\0true}\xff\xfe".to_vec()), ..Behavior::default() });
    let first = app.create_handler(http_handler("answers NUL", "clients.create", &sink.url("/nul"), 1)).await;
    app.create_handler(http_handler("next in the chain", "clients.create", &sink.url("/next"), 2)).await;
    for n in 0..2 {
        let (status, _) = app.post_event(&envelope("clients.create", json!(5), json!({"n": n}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    // The rest of the first event's chain, and the object's next event, go.
    sink.wait_for("/next", 2, Duration::from_secs(10)).await;
    sink.wait_for("/nul", 2, Duration::from_secs(10)).await;
    let logs = app
        .api_until(&format!("/api/v1/handlers/{}/logs", first["id"]), "both attempts logged", |l| {
            l["logs"].as_array().unwrap().len() == 2
        })
        .await;
    let log = &logs["logs"][0];
    assert_eq!(log["outcome"], "success");
    let body = log["response_body"].as_str().unwrap();
    assert!(body.starts_with("{\"ok\":\u{2400}true}\u{FFFD}"), "{body:?}");
    assert!(body.contains("[provisiond: 1 NUL byte shown as ␀; bytes that are not UTF-8 shown as �]"), "{body:?}");
    let page = app.get(&format!("/provisioning/logs/{}", log["id"])).await;
    assert_eq!(page.status(), StatusCode::SEE_OTHER, "signed out");
    app.sign_in().await;
    let page = app.get_page(&format!("/provisioning/logs/{}", log["id"])).await;
    assert!(page.contains("1 NUL byte shown as ␀"), "the details page shows the answer and says what was replaced");
}

async fn nul_bytes_in_a_scripts_output_are_recorded_as_shown(db: TestDb) {
    let app = TestApp::spawn(db).await;
    app.write_script("nul.sh", "#!/bin/sh\ncat >/dev/null\nprintf 'out\\000put'\nprintf 'err\\000' >&2\n", true);
    let handler = app
        .create_handler(
            json!({"name": "nul", "events_id": "clients.create", "type": "script", "target": "nul.sh", "priority": 1}),
        )
        .await;
    let (status, _) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let logs = app
        .api_until(&format!("/api/v1/handlers/{}/logs", handler["id"]), "the attempt logged", |l| {
            !l["logs"].as_array().unwrap().is_empty()
        })
        .await;
    let log = &logs["logs"][0];
    assert_eq!(log["outcome"], "success", "{log}");
    let output = log["response_body"].as_str().unwrap();
    assert!(output.starts_with("out\u{2400}put"), "{output:?}");
    assert!(output.contains("err\u{2400}"), "{output:?}");
    assert!(!output.contains('\0'));
}

async fn a_nul_in_an_object_id_is_refused_alone(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("sink", "clients.create", &sink.url("/h"), 1)).await;
    let client = reqwest::Client::new();
    // Valid and hostile events posted at once, so that they share batches.
    let posts = (0..110).map(|n| {
        let (client, url) = (client.clone(), app.url("/api/v1/events"));
        async move {
            let object = if n % 11 == 0 { json!(format!("bad\u{0}{n}")) } else { json!(n) };
            let res = client
                .post(url)
                .bearer_auth(API_TOKEN)
                .json(&envelope("clients.create", object, json!({"n": n})))
                .send()
                .await
                .unwrap();
            let status = res.status();
            (n, status, res.json::<serde_json::Value>().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(posts).await;
    for (n, status, body) in &answers {
        if n % 11 == 0 {
            assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
            assert!(body["error"].as_str().unwrap().contains("event.object_id"), "the field is named: {body}");
        } else {
            assert_eq!(*status, StatusCode::ACCEPTED, "event {n}: {body}");
        }
    }
    sink.wait_for("/h", 100, Duration::from_secs(20)).await;
}

async fn a_nul_in_a_filter_is_a_400(db: TestDb) {
    let (app, _) = TestApp::signed_in(db).await;
    let handler = app.create_handler(http_handler("h", "clients.create", "http://127.0.0.1:9/h", 1)).await;
    let id = &handler["id"];
    for path in [
        "/provisioning/logs?q=%00".to_owned(),
        "/provisioning/logs?object_id=a%00b".to_owned(),
        format!("/provisioning/{id}/logs?q=x%00"),
        "/provisioning/timeline?entity=clients&object_id=%00".to_owned(),
        "/provisioning?event=clients.create%00".to_owned(),
    ] {
        let res = app.get(&path).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "GET {path}");
        assert!(res.text().await.unwrap().contains("NUL"), "GET {path} says why");
    }
    let res = app.api(reqwest::Method::GET, &format!("/api/v1/handlers/{id}/logs?limit=1%00")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().contains("NUL"));
    // A NUL in a handler's fields is refused beside the field.
    let res = app
        .api(reqwest::Method::POST, "/api/v1/handlers")
        .json(&http_handler("bad\u{0}name", "clients.create", "http://127.0.0.1:9/\u{0}", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let errors = &res.json::<serde_json::Value>().await.unwrap()["errors"];
    assert!(errors["name"].is_string() && errors["target"].is_string(), "{errors}");
    // In a bulk retry's or a replay's filter, or a test event's envelope: named, 422.
    for (path, body) in [
        ("/api/v1/deliveries/retry".to_owned(), json!({"object_id": "a\u{0}b"})),
        (format!("/api/v1/handlers/{id}/replay"), json!({"from": "2026-01-01\u{0}"})),
        (
            format!("/api/v1/handlers/{id}/test"),
            json!({"payload": {"event": {"events_id": "clients.create", "object_id": "1\u{0}"}, "data": {}}}),
        ),
    ] {
        let res = app.api(reqwest::Method::POST, &path).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "POST {path}");
        let answer: serde_json::Value = res.json().await.unwrap();
        assert!(answer.to_string().contains("NUL"), "POST {path} says why: {answer}");
    }
    // A deeply nested or huge envelope for a test: refused, never a crash.
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let res = app
        .api(reqwest::Method::POST, &format!("/api/v1/handlers/{id}/test"))
        .json(&json!({"payload": deep}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let huge = "x".repeat(2 * 1024 * 1024);
    // On a connection of its own: the server answers 413 from the Content-Length and closes it
    // without reading the rest, so the client may see the 413 or a write cut short.
    let sent = reqwest::Client::new()
        .post(app.url(&format!("/api/v1/handlers/{id}/test")))
        .bearer_auth(API_TOKEN)
        .json(&json!({"payload": huge}))
        .send()
        .await;
    match sent {
        Ok(res) => assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "refused while sending: {e}"),
    }
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

async fn an_idempotency_key_used_for_another_body_is_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let post = |body: serde_json::Value| {
        app.api(reqwest::Method::POST, "/api/v1/events").header("Idempotency-Key", "order-17").json(&body).send()
    };
    let first = post(envelope("clients.create", json!(17), json!({"amount": 10}))).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: serde_json::Value = first.json().await.unwrap();
    let again = post(envelope("clients.create", json!(17), json!({"amount": 10}))).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED, "the same body: the first answer");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["id"], first["id"]);
    let other = post(envelope("clients.create", json!(17), json!({"amount": 99}))).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let error = other.json::<serde_json::Value>().await.unwrap()["error"].as_str().unwrap().to_owned();
    assert!(error.contains("Idempotency-Key") && error.contains("another body"), "{error}");
}

//! `/api/v1/handlers`: the same rules as the form, in JSON.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    handlers_crud_through_the_api,
    the_api_validates_like_the_form,
    the_api_needs_its_bearer_token,
    bad_bodies_get_clear_errors,
    the_list_filters_like_the_advanced_search,
    handlers_deleted_while_their_attempts_are_recorded,
);

fn body() -> Value {
    json!({"name": "Billing hook", "events_id": "clients.create", "type": "http", "target": "127.0.0.1:5000/api", "priority": 5})
}

async fn create(app: &TestApp, body: &Value) -> Value {
    let res = app.api(Method::POST, "/api/v1/handlers").json(body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn handlers_crud_through_the_api(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let created = create(&app, &body()).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["name"], "Billing hook");
    assert_eq!(created["target"], "http://127.0.0.1:5000/api");
    assert_eq!(created["status"], "enabled", "enabled by default");
    assert_eq!(created["timeout_ms"], 10000, "default timeout");
    assert_eq!(created["type"], "http");
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let got: Value =
        app.api(Method::GET, &format!("/api/v1/handlers/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, created);

    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{id}"))
        .json(&json!({"status": "disabled", "priority": "9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let patched: Value = res.json().await.unwrap();
    assert_eq!((patched["status"].as_str(), patched["priority"].as_i64()), (Some("disabled"), Some(9)));
    assert_eq!(patched["name"], "Billing hook", "fields not given are kept");

    // The UI sees what the API did.
    let (ui, _) = (&app, app.sign_in().await);
    let page = ui.get_page("/provisioning?status=disabled").await;
    assert!(page.contains("Billing hook"));

    let res = app.api(Method::POST, &format!("/api/v1/handlers/{id}/secret")).send().await.unwrap();
    let rotated: Value = res.json().await.unwrap();
    assert_ne!(rotated["secret"], created["secret"]);

    let logs: Value =
        app.api(Method::GET, &format!("/api/v1/handlers/{id}/logs")).send().await.unwrap().json().await.unwrap();
    assert_eq!(logs["logs"], json!([]));

    let res = app.api(Method::DELETE, &format!("/api/v1/handlers/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE, Method::PATCH] {
        let res = app.api(method.clone(), &format!("/api/v1/handlers/{id}")).json(&json!({})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{method}");
        assert!(res.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("no handler"));
    }
    let res = app.api(Method::GET, "/api/v1/handlers/abc").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = app.api(Method::GET, &format!("/api/v1/handlers/{id}/logs")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn the_api_validates_like_the_form(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let cases = [
        ("name", json!("  "), "Enter a name"),
        ("name", json!("x".repeat(201)), "The name must be at most 200 characters"),
        ("events_id", json!("clients.explode"), "Choose an event from the list"),
        ("type", json!("smtp"), "Choose a handler type: http or script"),
        ("target", json!("ftp://x/y"), "Use an http:// or https:// URL, not ftp://"),
        ("status", json!("sleeping"), "Choose a status: enabled, paused, disabled or archived"),
        ("priority", json!(-1), "Enter a whole number from 0 to 1000000"),
        ("priority", json!(1_000_001), "Enter a whole number from 0 to 1000000"),
        ("priority", json!(1.5), "Enter a whole number from 0 to 1000000"),
        ("priority", json!(true), "must be a string or a number"),
        ("timeout_ms", json!(50), "Enter a timeout in milliseconds from 100 to 300000"),
        (
            "colour",
            json!("red"),
            "unknown field; the fields are name, events_id, type, target, status, priority, timeout_ms, ordering_group, signature, retry_schedule, rate_limit",
        ),
    ];
    for (field, value, message) in cases {
        let mut b = body();
        b[field] = value.clone();
        let res = app.api(Method::POST, "/api/v1/handlers").json(&b).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{field}={value}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["errors"][field], message, "{field}={value}: {err}");
    }
    let res = app.api(Method::POST, "/api/v1/handlers").json(&json!({})).send().await.unwrap();
    let err: Value = res.json().await.unwrap();
    for field in ["name", "events_id", "type"] {
        assert!(err["errors"][field].is_string(), "{field}: {err}");
    }
    // A script inside the scripts dir is fine; one outside is not.
    app.write_script("run.sh", "#!/bin/sh\n", true);
    let mut b = body();
    b["type"] = json!("script");
    b["target"] = json!("run.sh");
    create(&app, &b).await;
    b["target"] = json!("../run.sh");
    let res = app.api(Method::POST, "/api/v1/handlers").json(&b).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // An invalid PATCH changes nothing.
    let id = create(&app, &body()).await["id"].as_i64().unwrap();
    let res = app
        .api(Method::PATCH, &format!("/api/v1/handlers/{id}"))
        .json(&json!({"name": "ok", "priority": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let got: Value =
        app.api(Method::GET, &format!("/api/v1/handlers/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!((got["name"].as_str(), got["priority"].as_i64()), (Some("Billing hook"), Some(5)));
    let list: Value = app.api(Method::GET, "/api/v1/handlers").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["handlers"].as_array().unwrap().len(), 2, "only the valid handlers exist");
}

async fn the_api_needs_its_bearer_token(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let plain = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong"), Some("Basic YWRtaW46eA=="), Some("Bearer ")] {
        let mut req = plain.post(app.url("/api/v1/handlers")).json(&body());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        assert!(res.json::<Value>().await.unwrap()["error"].is_string());
    }
    let res = plain.get(app.url("/api/v1/handlers")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let list: Value = app.api(Method::GET, "/api/v1/handlers").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["handlers"], json!([]), "nothing was created");
    // The OpenAPI document is public and names the routes.
    let doc: Value = plain.get(app.url("/api/v1/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/handlers/{id}"].is_object());
}

async fn bad_bodies_get_clear_errors(db: TestDb) {
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.max_body_bytes = 4096).await;
    let send = |body: Vec<u8>| {
        app.api(Method::POST, "/api/v1/handlers").header("content-type", "application/json").body(body).send()
    };
    let res = send(b"{\"name\": ".to_vec()).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.json::<Value>().await.unwrap()["error"].as_str().unwrap().contains("not valid JSON"));
    let res = send(b"[1,2]".to_vec()).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut big = body();
    big["name"] = json!("x".repeat(5000));
    let res = send(serde_json::to_vec(&big).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let res = app.api(Method::GET, "/api/v1/nowhere").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list: Value = app.api(Method::GET, "/api/v1/handlers").send().await.unwrap().json().await.unwrap();
    assert_eq!(list["handlers"], json!([]));
}

async fn the_list_filters_like_the_advanced_search(db: TestDb) {
    let app = TestApp::spawn(db).await;
    for (name, event, status, priority) in [
        ("a", "clients.create", "enabled", 3),
        ("b", "clients.update", "disabled", 1),
        ("c", "clients.create", "archived", 2),
    ] {
        let mut b = body();
        b["name"] = json!(name);
        b["events_id"] = json!(event);
        b["status"] = json!(status);
        b["priority"] = json!(priority);
        create(&app, &b).await;
    }
    let names = |q: &'static str| {
        let app = &app;
        async move {
            let list: Value =
                app.api(Method::GET, &format!("/api/v1/handlers{q}")).send().await.unwrap().json().await.unwrap();
            list["handlers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("").await, ["b", "a"], "enabled and disabled, by priority");
    assert_eq!(names("?status=archived").await, ["c"]);
    assert_eq!(names("?event=clients.create").await, ["a"]);
    assert_eq!(names("?type=script").await, Vec::<String>::new());
    let res = app.api(Method::GET, "/api/v1/handlers?status=nope").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

/// A deletion and the recorder meet on the handler's row and its deliveries:
/// each deletion, made while attempts of the handler are being recorded
/// (some asking to be held back), answers 204, and every attempt recorded is
/// recorded with its answer, never without it after a failed transaction.
async fn handlers_deleted_while_their_attempts_are_recorded(db: TestDb) {
    let app = TestApp::with_retries(db, "0s").await;
    let sink = Sink::start().await;
    sink.behave(
        "/slow-down",
        Behavior { statuses: [429].into(), headers: vec![("Retry-After", "0".into())], ..Behavior::default() },
    );
    let mut ids = Vec::new();
    for n in 0..8 {
        let path = if n % 2 == 0 { "/ok" } else { "/slow-down" };
        let handler =
            app.create_handler(http_handler(&format!("h{n}"), "clients.create", &sink.url(path), 1 + n)).await;
        ids.push(handler["id"].as_i64().unwrap());
    }
    let poster = {
        let app_url = app.url("/api/v1/events");
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..400 {
                let body = envelope("clients.create", json!(n % 40), json!({"n": n}));
                let res =
                    client.post(&app_url).bearer_auth(crate::helpers::API_TOKEN).json(&body).send().await.unwrap();
                assert_eq!(res.status(), StatusCode::ACCEPTED);
            }
        })
    };
    for (n, id) in ids.iter().enumerate() {
        sink.wait_until(std::time::Duration::from_secs(20), "attempts going on", |r| r.len() >= 40 * (n + 1)).await;
        let res = app.api(Method::DELETE, &format!("/api/v1/handlers/{id}")).send().await.unwrap();
        let status = res.status();
        assert_eq!(status, StatusCode::NO_CONTENT, "deleting handler {id}: {}", res.text().await.unwrap());
    }
    poster.await.unwrap();
    app.settled().await;
    // (An UPDATE that changes nothing counts the rows it matches.)
    let without_answer =
        app.raw_sql("UPDATE execution_logs SET error = error WHERE error LIKE '%could not be recorded%'");
    assert_eq!(without_answer, 0, "attempts recorded without their answer");
    assert!(app.raw_sql("UPDATE execution_logs SET error = error") > 0, "attempts were recorded");
}

//! The OpenAPI document (`/api/v1/openapi.json`) against the API's real
//! answers: every documented route and status is called, and each answer's
//! body must match the schema the document gives for it (required fields, no
//! undocumented ones, date-times, enums); an answer with a status the
//! document does not give for its route fails too.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use provisiond::domain::{DeliveryState, HandlerStatus, HandlerType, Outcome};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::Sink,
};

on_both_backends!(every_route_answers_as_the_openapi_document_says);

/// The document, made a JSON Schema root: OpenAPI 3.0's `nullable` becomes
/// a `null` type, and `components` stay where the `$ref`s point.
struct Document {
    doc: Value,
    components: Value,
    seen: BTreeSet<(String, String, u16)>,
}

impl Document {
    async fn load(app: &TestApp) -> Self {
        let res = reqwest::get(app.url("/api/v1/openapi.json")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let doc: Value = res.json().await.unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let components = json_schema(doc["components"].clone());
        Self { doc, components, seen: BTreeSet::new() }
    }

    /// Holds the answer `res` of `method path` (`path` as documented, e.g.
    /// `/handlers/{id}`) to the document.
    async fn check(&mut self, method: Method, path: &str, res: reqwest::Response) -> Value {
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        let op = &self.doc["paths"][path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in the document");
        let answer = &op["responses"][status.to_string()];
        assert!(answer.is_object(), "{method} {path} answered {status}, which the document does not give: {text}");
        self.seen.insert((method.to_string(), path.to_owned(), status));
        let Some(schema) = answer.pointer("/content/application~1json/schema") else {
            assert!(text.is_empty(), "{method} {path} {status}: a body the document does not give: {text}");
            return Value::Null;
        };
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path} {status}: {e}: {text}"));
        let root = json!({ "allOf": [json_schema(schema.clone())], "components": self.components });
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{method} {path} {status}: the document's schema is not valid: {e}"));
        let errors: Vec<String> =
            validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{method} {path} {status} does not match the document: {errors:#?}\n{body:#}");
        body
    }

    /// Every status of every documented route was seen.
    fn assert_all_seen(&self) {
        let mut missing = Vec::new();
        for (path, ops) in self.doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                for status in op["responses"].as_object().unwrap().keys() {
                    let key = (method.to_uppercase(), path.clone(), status.parse().unwrap());
                    if !self.seen.contains(&key) {
                        missing.push(format!("{} {path} {status}", key.0));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "documented but never answered here: {missing:?}");
    }

    fn enum_of(&self, pointer: &str) -> Vec<String> {
        let values = self.doc.pointer(pointer).unwrap_or_else(|| panic!("no {pointer}"));
        values.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    }
}

/// OpenAPI 3.0 to JSON Schema: `nullable: true` as a `null` type.
fn json_schema(mut value: Value) -> Value {
    match &mut value {
        Value::Object(map) => {
            for v in map.values_mut() {
                *v = json_schema(v.take());
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                return nullable(map.clone());
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| *v = json_schema(v.take())),
        _ => {}
    }
    value
}

fn nullable(mut map: Map<String, Value>) -> Value {
    match map.get("type").cloned() {
        Some(Value::String(t)) => {
            map.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.push(Value::Null);
            }
            Value::Object(map)
        }
        _ => json!({ "anyOf": [Value::Object(map), { "type": "null" }] }),
    }
}

async fn every_route_answers_as_the_openapi_document_says(db: TestDb) {
    // A small body limit: a body over it still fits the socket's buffers,
    // so the early 413 is read, not cut off by a reset.
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| {
        s.retry_schedule = provisiond::domain::RetrySchedule::parse("1h").unwrap();
        s.max_body_bytes = 4096;
    })
    .await;
    let sink = Sink::start().await;
    let mut doc = Document::load(&app).await;

    // The enums are the domain's.
    let texts = |all: &[&str]| all.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    assert_eq!(doc.enum_of("/components/schemas/ExecutionLog/properties/outcome/enum"), texts(&outcomes));
    let states: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(doc.enum_of("/components/schemas/Delivery/properties/state/enum"), texts(&states));
    let statuses: Vec<&str> = HandlerStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(doc.enum_of("/components/schemas/Handler/properties/status/enum"), texts(&statuses));
    let types: Vec<&str> = HandlerType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(doc.enum_of("/components/schemas/Handler/properties/type/enum"), texts(&types));

    // Without the token, every route is 401.
    let client = reqwest::Client::new();
    for (method, path) in [
        (Method::GET, "/handlers"),
        (Method::POST, "/handlers"),
        (Method::GET, "/handlers/{id}"),
        (Method::PATCH, "/handlers/{id}"),
        (Method::DELETE, "/handlers/{id}"),
        (Method::POST, "/handlers/{id}/secret"),
        (Method::GET, "/handlers/{id}/logs"),
        (Method::POST, "/events"),
        (Method::GET, "/events/{id}"),
        (Method::POST, "/deliveries/{id}/retry"),
    ] {
        let url = app.url(&format!("/api/v1{}", path.replace("{id}", "1")));
        let res = client.request(method.clone(), url).send().await.unwrap();
        doc.check(method, path, res).await;
    }

    let api = |method: Method, path: &str| app.api(method, &format!("/api/v1{path}"));
    let too_big = "x".repeat(5000);

    // Handlers.
    let ok = api(Method::POST, "/handlers").json(&http_handler("ok", "clients.create", &sink.url("/ok"), 1));
    let handler = doc.check(Method::POST, "/handlers", ok.send().await.unwrap()).await;
    let id = handler["id"].as_i64().unwrap();
    let refused = http_handler("refused", "clients.create", "127.0.0.1:9/closed", 2);
    let refused =
        doc.check(Method::POST, "/handlers", api(Method::POST, "/handlers").json(&refused).send().await.unwrap()).await;
    for body in [json!({"name": ""}).to_string(), "not json".to_owned(), too_big.clone()] {
        let res = api(Method::POST, "/handlers").body(body).send().await.unwrap();
        doc.check(Method::POST, "/handlers", res).await;
    }
    for query in ["", "?status=enabled&type=http&limit=1", "?status=bogus"] {
        doc.check(Method::GET, "/handlers", api(Method::GET, &format!("/handlers{query}")).send().await.unwrap()).await;
    }
    for path in [format!("/handlers/{id}"), "/handlers/999999".into()] {
        doc.check(Method::GET, "/handlers/{id}", api(Method::GET, &path).send().await.unwrap()).await;
        doc.check(
            Method::POST,
            "/handlers/{id}/secret",
            api(Method::POST, &format!("{path}/secret")).send().await.unwrap(),
        )
        .await;
    }
    for (path, body) in [
        (format!("/handlers/{id}"), json!({"ordering_group": "crm"}).to_string()),
        (format!("/handlers/{id}"), json!({"priority": -1}).to_string()),
        (format!("/handlers/{id}"), "[".to_owned()),
        ("/handlers/999999".into(), "{}".to_owned()),
    ] {
        doc.check(Method::PATCH, "/handlers/{id}", api(Method::PATCH, &path).body(body).send().await.unwrap()).await;
    }

    // Events, their deliveries and the attempts' logs.
    let posted = api(Method::POST, "/events").json(&envelope("clients.create", json!(7), json!({"name": "Ann"})));
    let posted = doc.check(Method::POST, "/events", posted.send().await.unwrap()).await;
    for body in ["{".to_owned(), json!({"event": {"events_id": "nope"}}).to_string(), too_big] {
        doc.check(Method::POST, "/events", api(Method::POST, "/events").body(body).send().await.unwrap()).await;
    }
    let event = posted["id"].as_i64().unwrap();
    // Parked behind the first handler, then both attempted: the refused one retries in an hour.
    doc.check(Method::GET, "/events/{id}", api(Method::GET, &format!("/events/{event}")).send().await.unwrap()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let deliveries = loop {
        let res = api(Method::GET, &format!("/events/{event}")).send().await.unwrap();
        let body = doc.check(Method::GET, "/events/{id}", res).await;
        let deliveries = body["deliveries"].as_array().unwrap().clone();
        if deliveries.iter().all(|d| d["attempts"] == 1 && d["state"] != "in_flight") {
            break deliveries;
        }
        assert!(Instant::now() < deadline, "the attempts did not end: {deliveries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    doc.check(Method::GET, "/events/{id}", api(Method::GET, "/events/999999").send().await.unwrap()).await;
    for handler in [id, refused["id"].as_i64().unwrap(), 999999] {
        let res = api(Method::GET, &format!("/handlers/{handler}/logs")).send().await.unwrap();
        doc.check(Method::GET, "/handlers/{id}/logs", res).await;
    }
    let delivery_of =
        |handler: i64| deliveries.iter().find(|d| d["handler_id"] == handler).unwrap()["id"].as_i64().unwrap();
    for delivery in [delivery_of(id), delivery_of(refused["id"].as_i64().unwrap()), 999999] {
        let res = api(Method::POST, &format!("/deliveries/{delivery}/retry")).send().await.unwrap();
        doc.check(Method::POST, "/deliveries/{id}/retry", res).await;
    }

    for path in [format!("/handlers/{id}"), "/handlers/999999".into()] {
        doc.check(Method::DELETE, "/handlers/{id}", api(Method::DELETE, &path).send().await.unwrap()).await;
    }

    // The deliveries list.
    doc.check(Method::GET, "/deliveries", api(Method::GET, "/deliveries").send().await.unwrap()).await;
    doc.check(Method::GET, "/deliveries", api(Method::GET, "/deliveries?state=failing&limit=1").send().await.unwrap())
        .await;
    doc.check(Method::GET, "/deliveries", api(Method::GET, "/deliveries?state=stuck").send().await.unwrap()).await;
    let anonymous = app.client.get(app.url("/api/v1/deliveries")).send().await.unwrap();
    doc.check(Method::GET, "/deliveries", anonymous).await;

    // Tokens and the audit log.
    let created = api(Method::POST, "/tokens").json(&json!({"name": "dashboards", "scope": "read"}));
    let created = doc.check(Method::POST, "/tokens", created.send().await.unwrap()).await;
    let bad = api(Method::POST, "/tokens").json(&json!({"name": "", "scope": "root"}));
    doc.check(Method::POST, "/tokens", bad.send().await.unwrap()).await;
    let read = |method: Method, path: &str| {
        app.client.request(method, app.url(&format!("/api/v1{path}"))).bearer_auth(created["token"].as_str().unwrap())
    };
    doc.check(Method::GET, "/tokens", api(Method::GET, "/tokens").send().await.unwrap()).await;
    doc.check(Method::GET, "/tokens", read(Method::GET, "/tokens").send().await.unwrap()).await;
    let by_read = read(Method::POST, "/tokens").json(&json!({"name": "x", "scope": "admin"}));
    doc.check(Method::POST, "/tokens", by_read.send().await.unwrap()).await;
    let unauthorized = |method: Method, path: &str| app.client.request(method, app.url(&format!("/api/v1{path}")));
    doc.check(Method::GET, "/tokens", unauthorized(Method::GET, "/tokens").send().await.unwrap()).await;
    doc.check(Method::POST, "/tokens", unauthorized(Method::POST, "/tokens").send().await.unwrap()).await;
    doc.check(Method::GET, "/audit", api(Method::GET, "/audit?action=handler.&limit=2").send().await.unwrap()).await;
    doc.check(Method::GET, "/audit", api(Method::GET, "/audit?from=soon").send().await.unwrap()).await;
    doc.check(Method::GET, "/audit", unauthorized(Method::GET, "/audit").send().await.unwrap()).await;
    // Bulk retry, replay and their jobs.
    let bulk = |body: Value| api(Method::POST, "/deliveries/retry").json(&body);
    doc.check(Method::POST, "/deliveries/retry", bulk(json!({"state": "failing"})).send().await.unwrap()).await;
    let started = bulk(json!({"state": "failed", "handler_id": 999999, "dry_run": false}));
    let started = doc.check(Method::POST, "/deliveries/retry", started.send().await.unwrap()).await;
    doc.check(Method::POST, "/deliveries/retry", bulk(json!({"state": "stuck"})).send().await.unwrap()).await;
    let not_json = api(Method::POST, "/deliveries/retry").body("{");
    doc.check(Method::POST, "/deliveries/retry", not_json.send().await.unwrap()).await;
    let by_read = read(Method::POST, "/deliveries/retry").json(&json!({}));
    doc.check(Method::POST, "/deliveries/retry", by_read.send().await.unwrap()).await;
    doc.check(Method::POST, "/deliveries/retry", unauthorized(Method::POST, "/deliveries/retry").send().await.unwrap())
        .await;
    // Many events for a replay that runs long enough to be cancelled.
    app.raw_sql(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000)
         INSERT INTO events (events_id, entity, object_id, payload, received_at)
         SELECT 'clients.create', 'clients', CAST(x AS TEXT), '{}', CURRENT_TIMESTAMP FROM n",
    );
    let replay = format!("/handlers/{}/replay", refused["id"]);
    let replay_with = |path: &str, body: Value| api(Method::POST, path).json(&body);
    for (path, body) in [
        (replay.clone(), json!({"object_id": 7})),
        (replay.clone(), json!({"event": "clients.update"})),
        ("/handlers/999999/replay".to_owned(), json!({})),
    ] {
        doc.check(Method::POST, "/handlers/{id}/replay", replay_with(&path, body).send().await.unwrap()).await;
    }
    let running = replay_with(&replay, json!({"dry_run": false})).send().await.unwrap();
    let running = doc.check(Method::POST, "/handlers/{id}/replay", running).await;
    let cancel = format!("/jobs/{}/cancel", running["job"]["id"]);
    doc.check(Method::POST, "/jobs/{id}/cancel", api(Method::POST, &cancel).send().await.unwrap()).await;
    let disabled = json!({"name": "off", "events_id": "clients.create", "type": "http", "target": sink.url("/off"), "status": "disabled"});
    let disabled = doc
        .check(Method::POST, "/handlers", api(Method::POST, "/handlers").json(&disabled).send().await.unwrap())
        .await;
    let path = format!("/handlers/{}/replay", disabled["id"]);
    doc.check(Method::POST, "/handlers/{id}/replay", replay_with(&path, json!({})).send().await.unwrap()).await;
    doc.check(Method::POST, "/handlers/{id}/replay", unauthorized(Method::POST, &path).send().await.unwrap()).await;
    // A test event.
    let test = format!("/handlers/{}/test", refused["id"]);
    for (path, body) in [
        (test.clone(), String::new()),
        (
            test.clone(),
            json!({"payload": {"event": {"events_id": "clients.create", "object_id": 1}, "data": {}}}).to_string(),
        ),
        (test.clone(), json!({"payload": 5}).to_string()),
        (test.clone(), "{".to_owned()),
        ("/handlers/999999/test".to_owned(), String::new()),
    ] {
        doc.check(Method::POST, "/handlers/{id}/test", api(Method::POST, &path).body(body).send().await.unwrap()).await;
    }
    doc.check(Method::POST, "/handlers/{id}/test", read(Method::POST, &test).send().await.unwrap()).await;
    doc.check(Method::POST, "/handlers/{id}/test", unauthorized(Method::POST, &test).send().await.unwrap()).await;
    let job = format!("/jobs/{}", started["job"]["id"]);
    doc.check(Method::GET, "/jobs", api(Method::GET, "/jobs").send().await.unwrap()).await;
    doc.check(Method::GET, "/jobs", unauthorized(Method::GET, "/jobs").send().await.unwrap()).await;
    for path in [job.clone(), "/jobs/999999".into()] {
        doc.check(Method::GET, "/jobs/{id}", api(Method::GET, &path).send().await.unwrap()).await;
        let res = api(Method::POST, &format!("{path}/cancel")).send().await.unwrap();
        doc.check(Method::POST, "/jobs/{id}/cancel", res).await;
    }
    doc.check(Method::GET, "/jobs/{id}", unauthorized(Method::GET, &job).send().await.unwrap()).await;
    let res = unauthorized(Method::POST, &format!("{job}/cancel")).send().await.unwrap();
    doc.check(Method::POST, "/jobs/{id}/cancel", res).await;

    let token = format!("/tokens/{}", created["id"]);
    for _ in 0..2 {
        doc.check(Method::DELETE, "/tokens/{id}", api(Method::DELETE, &token).send().await.unwrap()).await;
    }
    doc.check(Method::DELETE, "/tokens/{id}", api(Method::DELETE, "/tokens/999999").send().await.unwrap()).await;
    doc.check(Method::DELETE, "/tokens/{id}", unauthorized(Method::DELETE, &token).send().await.unwrap()).await;
    doc.assert_all_seen();
}

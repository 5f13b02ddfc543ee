//! Accounts, roles, API token scopes and the audit log (DESIGN §8.3): what
//! each user and each token may do, through the pages and the API.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{ADMIN_USER, TestApp, TestDb, field_error, flash_of},
    on_both_backends,
    sink::Sink,
};

on_both_backends!(
    each_role_may_do_only_what_it_is_given,
    a_change_of_role_or_password_ends_the_users_sessions,
    passwords_are_at_least_twelve_characters,
    the_last_admin_stays_an_admin,
    each_token_scope_may_do_only_what_it_is_given,
    tokens_are_made_and_revoked_in_the_ui_and_shown_once,
    every_change_is_in_the_audit_log_with_its_author,
);

const VIEWER: (&str, &str) = ("vera", "viewer password 1");
const OPERATOR: (&str, &str) = ("otto", "operator password 1");

/// A server with an admin signed in, a viewer and an operator, and a
/// handler with a finished delivery; returns the handler.
async fn team(db: TestDb, sink: &Sink) -> (TestApp, String, Value) {
    let (app, csrf) = TestApp::signed_in(db).await;
    app.create_user(&csrf, VIEWER.0, VIEWER.1, "viewer").await;
    app.create_user(&csrf, OPERATOR.0, OPERATOR.1, "operator").await;
    let handler = app.create_handler(http_handler("CRM", "clients.create", &sink.url("/crm"), 0)).await;
    let (status, _) = app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.settled().await;
    (app, csrf, handler)
}

async fn delivery_of(app: &TestApp) -> i64 {
    let event = app.api_json("/api/v1/events/1").await;
    event["deliveries"][0]["id"].as_i64().unwrap()
}

async fn each_role_may_do_only_what_it_is_given(db: TestDb) {
    let sink = Sink::start().await;
    let (app, _, handler) = team(db, &sink).await;
    let (id, secret) = (handler["id"].as_i64().unwrap(), handler["secret"].as_str().unwrap().to_owned());
    let delivery = delivery_of(&app).await;
    let fields = [
        ("name", "x"),
        ("events_id", "clients.create"),
        ("type", "http"),
        ("target", "http://127.0.0.1:1/x"),
        ("status", "enabled"),
        ("priority", "0"),
        ("timeout_ms", "1000"),
    ];
    let writes: Vec<(String, Vec<(&str, &str)>)> = vec![
        ("/provisioning".into(), fields.to_vec()),
        (format!("/provisioning/{id}"), fields.to_vec()),
        (format!("/provisioning/{id}/status"), vec![("status", "disabled")]),
        (format!("/provisioning/{id}/secret"), vec![]),
        (format!("/provisioning/{id}/delete"), vec![]),
        (format!("/provisioning/deliveries/{delivery}/retry"), vec![("confirm", "yes")]),
        ("/provisioning/deliveries/retry".into(), vec![("state", "failed")]),
        ("/provisioning/replay".into(), vec![("handler_id", "1")]),
        (format!("/provisioning/{id}/test"), vec![]),
        ("/provisioning/jobs/1/cancel".into(), vec![]),
        ("/settings/users".into(), vec![("username", "eve"), ("password", "a long password"), ("role", "admin")]),
        ("/settings/users/1".into(), vec![("role", "viewer")]),
        ("/settings/users/1/delete".into(), vec![]),
        ("/settings/tokens".into(), vec![("name", "mine"), ("scope", "admin")]),
    ];

    // A viewer reads every page, never sees a secret, and every POST is 403.
    let viewer = app.browser(VIEWER.0, VIEWER.1).await;
    for path in ["/provisioning", &format!("/provisioning/{id}/edit"), "/provisioning/logs", "/settings/audit"] {
        let page = viewer.get_page(path).await;
        assert!(!page.contains(&secret), "{path} shows the secret to a viewer");
    }
    let edit = viewer.get_page(&format!("/provisioning/{id}/edit")).await;
    assert!(edit.contains("Only an admin sees the secret."));
    assert!(!edit.contains("Rotate secret") && !edit.contains(">Apply<"), "a viewer is offered no change");
    for page in ["/settings/users", "/settings/tokens"] {
        assert_eq!(viewer.get(page).await.status(), StatusCode::FORBIDDEN, "{page}");
    }
    for (path, fields) in &writes {
        let res = viewer.post(path, fields).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "viewer POST {path}");
        assert!(res.text().await.unwrap().contains("You may not do this"), "{path} says why");
    }

    // An operator changes status and retries, and touches nothing else.
    let operator = app.browser(OPERATOR.0, OPERATOR.1).await;
    assert!(!operator.get_page(&format!("/provisioning/{id}/edit")).await.contains(&secret));
    for (path, fields) in &writes {
        let res = operator.post(path, fields).await;
        let allowed = path.ends_with("/status") || path.ends_with("/retry") && path.contains("deliveries/");
        // Retries, replays and tests are an operator's; their first answer is a page (the count, the outcome).
        let asks = path.ends_with("deliveries/retry") || path.ends_with("/replay") || path.ends_with("/test");
        let expected = if allowed && !asks {
            StatusCode::SEE_OTHER
        } else if path.ends_with("/replay") {
            StatusCode::CONFLICT // the operator disabled it just before
        } else if asks {
            StatusCode::OK
        } else if path.ends_with("/cancel") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::FORBIDDEN
        };
        assert_eq!(res.status(), expected, "operator POST {path}");
    }
    let stored = app.api_json(&format!("/api/v1/handlers/{id}")).await;
    assert_eq!(stored["status"], "disabled", "the operator's status change took");
    assert_eq!(stored["secret"], secret, "the secret is the same");
    assert_eq!(stored["name"], "CRM");
    assert_eq!(app.api_json("/api/v1/handlers").await["handlers"].as_array().unwrap().len(), 1);

    // Both may still sign out.
    for browser in [&viewer, &operator] {
        assert_eq!(browser.post("/logout", &[]).await.status(), StatusCode::SEE_OTHER);
        assert_eq!(browser.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "signed out");
    }
}

async fn a_change_of_role_or_password_ends_the_users_sessions(db: TestDb) {
    let sink = Sink::start().await;
    let (app, csrf, _) = team(db, &sink).await;
    let users = app.get_page("/settings/users").await;
    let user_id = |name: &str| -> String {
        let re = regex::Regex::new(&format!(r#"for="role-(\d+)">Role of {name}<"#)).unwrap();
        re.captures(&users).unwrap_or_else(|| panic!("{name} listed"))[1].to_owned()
    };
    let (vera, otto) = (user_id(VIEWER.0), user_id(OPERATOR.0));

    // A new role ends the viewer's session; signing in again gives the new role.
    let viewer = app.browser(VIEWER.0, VIEWER.1).await;
    let res = app.post_form(&format!("/settings/users/{vera}"), &[("csrf_token", &csrf), ("role", "operator")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(flash_of(&app.get_page("/settings/users").await).unwrap().contains("their sessions have ended"));
    assert_eq!(viewer.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "signed out by the change");
    let again = app.browser(VIEWER.0, VIEWER.1).await;
    assert!(again.get_page("/provisioning").await.contains("(operator)"));

    // A password set by an admin ends the sessions too, and the old one no longer signs in.
    let operator = app.browser(OPERATOR.0, OPERATOR.1).await;
    let res = app
        .post_form(
            &format!("/settings/users/{otto}"),
            &[("csrf_token", &csrf), ("role", ""), ("password", "a brand new password")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(operator.get("/provisioning").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(operator.sign_in(OPERATOR.0, OPERATOR.1).await.status(), StatusCode::OK, "the old password is refused");
    let operator = app.browser(OPERATOR.0, "a brand new password").await;

    // One's own password: the other sessions end, this one goes on with a new id.
    let elsewhere = app.browser(OPERATOR.0, "a brand new password").await;
    let res = operator
        .post(
            "/settings/password",
            &[("current_password", "a brand new password"), ("new_password", "my own password 2")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(res.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("provisiond_session=")));
    assert_eq!(operator.get("/provisioning").await.status(), StatusCode::OK, "still signed in here");
    assert_eq!(elsewhere.get("/provisioning").await.status(), StatusCode::SEE_OTHER, "signed out elsewhere");

    // A deleted user is signed out at once.
    let deleted = app.browser(VIEWER.0, VIEWER.1).await;
    let confirm = app.get_page(&format!("/settings/users/{vera}/delete")).await;
    assert!(confirm.contains("Delete user vera?"));
    let res = app.post_form(&format!("/settings/users/{vera}/delete"), &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(deleted.get("/provisioning").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(deleted.sign_in(VIEWER.0, VIEWER.1).await.status(), StatusCode::OK, "no such user any more");
}

async fn passwords_are_at_least_twelve_characters(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let res = app
        .post_form(
            "/settings/users",
            &[("csrf_token", &csrf), ("username", "shorty"), ("password", "elevenchars"), ("role", "viewer")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert_eq!(field_error(&page, "password").as_deref(), Some("The password must be at least 12 characters"));
    assert!(!app.get_page("/settings/users").await.contains("shorty"), "nothing was created");
    for (field, value, message) in [
        ("role", "root", "The role must be one of admin, operator, viewer"),
        ("username", "two words", "The user name must not contain spaces or control characters"),
    ] {
        let mut fields = vec![("csrf_token", csrf.as_str()), ("password", "twelve chars")];
        fields.push((field, value));
        if field != "username" {
            fields.push(("username", "someone"));
        } else {
            fields.push(("role", "viewer"));
        }
        let res = app.post_form("/settings/users", &fields).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(field_error(&res.text().await.unwrap(), field).as_deref(), Some(message));
    }

    let res = app
        .post_form(
            "/settings/password",
            &[("csrf_token", &csrf), ("current_password", crate::helpers::ADMIN_PASSWORD), ("new_password", "short")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = res.text().await.unwrap();
    assert_eq!(field_error(&page, "new_password").as_deref(), Some("The password must be at least 12 characters"));
    let res = app
        .post_form(
            "/settings/password",
            &[("csrf_token", &csrf), ("current_password", "not it"), ("new_password", "long enough now")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        field_error(&res.text().await.unwrap(), "current_password").as_deref(),
        Some("This is not your current password")
    );
    assert_eq!(app.try_sign_in(ADMIN_USER, crate::helpers::ADMIN_PASSWORD).await.status(), StatusCode::SEE_OTHER);
}

async fn the_last_admin_stays_an_admin(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let res = app.post_form("/settings/users/1", &[("csrf_token", &csrf), ("role", "viewer")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("The last admin must stay an admin"));
    let res = app.post_form("/settings/users/1/delete", &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::CONFLICT, "one's own account");
    assert!(app.get_page("/provisioning").await.contains("(admin)"));
}

async fn each_token_scope_may_do_only_what_it_is_given(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let handler = app.create_handler(http_handler("CRM", "clients.create", "http://127.0.0.1:1/x", 0)).await;
    let mut tokens = std::collections::HashMap::new();
    for scope in ["ingest", "read", "admin"] {
        let res =
            app.api(Method::POST, "/api/v1/tokens").json(&json!({"name": scope, "scope": scope})).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let created: Value = res.json().await.unwrap();
        assert_eq!(created["scope"], scope);
        let token = created["token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("pvd_") && token.len() > 40, "{token}");
        tokens.insert(scope, token);
    }
    let call = |scope: &str, method: Method, path: &str, body: Option<Value>| {
        let mut req = app.client.request(method, app.url(path)).bearer_auth(&tokens[scope]);
        if let Some(body) = body {
            req = req.json(&body);
        }
        async move { req.send().await.unwrap() }
    };
    let event = envelope("clients.create", json!(5), json!({}));
    let new_handler = http_handler("n", "clients.create", "http://127.0.0.1:1/n", 0);
    let id = handler["id"].as_i64().unwrap();
    let cases: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, "/api/v1/events".into(), Some(event.clone())),
        (Method::GET, "/api/v1/handlers".into(), None),
        (Method::GET, format!("/api/v1/handlers/{id}"), None),
        (Method::POST, "/api/v1/handlers".into(), Some(new_handler.clone())),
        (Method::PATCH, format!("/api/v1/handlers/{id}"), Some(json!({"priority": 3}))),
        (Method::GET, "/api/v1/tokens".into(), None),
        (Method::GET, "/api/v1/audit".into(), None),
        (Method::GET, "/metrics".into(), None),
    ];
    // (ingest, read, admin): the status each scope gets.
    let expected = [
        (StatusCode::ACCEPTED, StatusCode::FORBIDDEN, StatusCode::ACCEPTED),
        (StatusCode::FORBIDDEN, StatusCode::OK, StatusCode::OK),
        (StatusCode::FORBIDDEN, StatusCode::OK, StatusCode::OK),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN, StatusCode::CREATED),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN, StatusCode::OK),
        (StatusCode::FORBIDDEN, StatusCode::FORBIDDEN, StatusCode::OK),
        (StatusCode::FORBIDDEN, StatusCode::OK, StatusCode::OK),
        (StatusCode::FORBIDDEN, StatusCode::OK, StatusCode::OK),
    ];
    for ((method, path, body), (ingest, read, admin)) in cases.into_iter().zip(expected) {
        for (scope, want) in [("ingest", ingest), ("read", read), ("admin", admin)] {
            let res = call(scope, method.clone(), &path, body.clone()).await;
            assert_eq!(res.status(), want, "{scope} token: {method} {path}");
            if want == StatusCode::FORBIDDEN && path.starts_with("/api") {
                let body: Value = res.json().await.unwrap();
                assert!(body["error"].as_str().unwrap().contains(&format!("scope `{scope}`")), "{body}");
            }
        }
    }
    // A read token never sees a secret; an admin token does.
    let read: Value = call("read", Method::GET, &format!("/api/v1/handlers/{id}"), None).await.json().await.unwrap();
    assert!(read.get("secret").is_none(), "{read}");
    let listed: Value = call("read", Method::GET, "/api/v1/handlers", None).await.json().await.unwrap();
    assert!(!listed.to_string().contains("whsec_"), "{listed}");
    let admin: Value = call("admin", Method::GET, &format!("/api/v1/handlers/{id}"), None).await.json().await.unwrap();
    assert_eq!(admin["secret"], handler["secret"]);

    // Without a token, or with a wrong one, /metrics and the API answer 401.
    assert_eq!(app.get("/metrics").await.status(), StatusCode::UNAUTHORIZED);
    let res =
        app.client.get(app.url("/api/v1/handlers")).bearer_auth("pvd_not-a-real-token-at-all").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // Each token's last use is listed; a revoked token stops working at once.
    let listed = app.api_json("/api/v1/tokens").await;
    let ingest = listed["tokens"].as_array().unwrap().iter().find(|t| t["name"] == "ingest").unwrap().clone();
    assert!(ingest["last_used_at"].is_string(), "{ingest}");
    assert!(!listed.to_string().contains(&tokens["ingest"]), "a token is never listed");
    let res = app.api(Method::DELETE, &format!("/api/v1/tokens/{}", ingest["id"])).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = call("ingest", Method::POST, "/api/v1/events", Some(event)).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "revoked");
    let revoked = app.api_json("/api/v1/tokens").await;
    assert!(revoked["tokens"].as_array().unwrap().iter().any(|t| t["name"] == "ingest" && t["revoked_at"].is_string()));
    // An admin token cannot make itself anything it is not: a user's password needs a user.
    let res =
        app.api(Method::POST, "/api/v1/tokens").json(&json!({"name": "x", "scope": "root"})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errors"]["scope"], "The scope must be one of ingest, read, admin");
}

async fn tokens_are_made_and_revoked_in_the_ui_and_shown_once(db: TestDb) {
    let (app, csrf) = TestApp::signed_in(db).await;
    let res = app
        .post_form("/settings/tokens", &[("csrf_token", &csrf), ("name", "billing core"), ("scope", "ingest")])
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    let re = regex::Regex::new(r#"<code class="secret-value" id="new-token">(pvd_[^<]+)</code>"#).unwrap();
    let token = re.captures(&page).expect("the new token is shown")[1].to_owned();
    let again = app.get_page("/settings/tokens").await;
    assert!(!again.contains(&token), "shown once");
    assert!(again.contains("billing core") && again.contains(&token[..12]) && again.contains("never"));

    let res = app
        .client
        .post(app.url("/api/v1/events"))
        .bearer_auth(&token)
        .json(&envelope("clients.create", json!(1), json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED, "the token works");
    // The last use is written beside the request, not before its answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let listed = loop {
        let listed = app.get_page("/settings/tokens").await;
        if !listed.contains(">never<") || std::time::Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(!listed.contains(">never<"), "its last use is shown");

    let re = regex::Regex::new(r#"action="/settings/tokens/(\d+)/revoke""#).unwrap();
    let id = re.captures(&listed).unwrap()[1].to_owned();
    let res = app.post_form(&format!("/settings/tokens/{id}/revoke"), &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(app.get_page("/settings/tokens").await.contains("revoked"));
    let res = app.client.get(app.url("/api/v1/handlers")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.post_form("/settings/tokens", &[("csrf_token", &csrf), ("name", ""), ("scope", "read")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_error(&res.text().await.unwrap(), "name").as_deref(), Some("Enter a name"));
}

async fn every_change_is_in_the_audit_log_with_its_author(db: TestDb) {
    let sink = Sink::start().await;
    let (app, csrf, handler) = team(db, &sink).await;
    let id = handler["id"].as_i64().unwrap();
    let secret = handler["secret"].as_str().unwrap().to_owned();
    // Through the API (the bootstrap token) and the pages (the admin, the operator).
    let res =
        app.api(Method::PATCH, &format!("/api/v1/handlers/{id}")).json(&json!({"priority": 7})).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = app.post_form(&format!("/provisioning/{id}/secret"), &[("csrf_token", &csrf)]).await;
    assert_eq!(res.status(), StatusCode::OK, "asks first, without JavaScript");
    assert!(res.text().await.unwrap().contains("Replace the signing secret"));
    let res = app.post_form(&format!("/provisioning/{id}/secret"), &[("csrf_token", &csrf), ("confirm", "yes")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let operator = app.browser(OPERATOR.0, OPERATOR.1).await;
    let delivery = delivery_of(&app).await;
    assert_eq!(
        operator.post(&format!("/provisioning/deliveries/{delivery}/retry"), &[("confirm", "yes")]).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        operator.post(&format!("/provisioning/{id}/status"), &[("status", "disabled")]).await.status(),
        StatusCode::SEE_OTHER
    );
    let res = app.api(Method::DELETE, &format!("/api/v1/handlers/{id}")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    let audit = app.api_json("/api/v1/audit").await;
    let entries = audit["entries"].as_array().unwrap();
    let summary: Vec<(String, String)> =
        entries.iter().map(|e| (e["actor"].as_str().unwrap().into(), e["action"].as_str().unwrap().into())).collect();
    let expected: Vec<(String, String)> = [
        ("token:bootstrap", "handler.delete"),
        ("otto", "handler.status"),
        ("otto", "delivery.retry"),
        ("admin", "handler.secret.rotate"),
        ("token:bootstrap", "handler.update"),
        ("token:bootstrap", "handler.create"),
        ("admin", "user.create"),
        ("admin", "user.create"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(summary, expected, "newest first, each with its author");
    let by_action = |action: &str| entries.iter().find(|e| e["action"] == action).unwrap().clone();
    assert_eq!(by_action("handler.update")["changes"], json!({"priority": {"old": 0, "new": 7}}));
    assert_eq!(by_action("handler.status")["changes"], json!({"status": {"old": "enabled", "new": "disabled"}}));
    assert_eq!(
        by_action("handler.secret.rotate")["changes"],
        json!({"secret": {"old": "(redacted)", "new": "(redacted)"}})
    );
    assert_eq!(by_action("handler.update")["target"], format!("handler {id} (CRM)"));
    assert!(by_action("handler.create")["at"].as_str().unwrap().ends_with('Z'));
    let text = audit.to_string();
    assert!(!text.contains(&secret) && !text.contains("whsec_"), "no secret in the audit log");
    assert!(!text.contains(OPERATOR.1), "no password in the audit log");

    // Filters, in the API and on the page.
    let otto = app.api_json("/api/v1/audit?actor=otto").await;
    assert_eq!(otto["entries"].as_array().unwrap().len(), 2);
    let handlers = app.api_json("/api/v1/audit?action=handler.").await;
    assert_eq!(handlers["entries"].as_array().unwrap().len(), 5);
    let page1 = app.api_json("/api/v1/audit?limit=3").await;
    assert_eq!(page1["more"], true);
    let last = page1["entries"][2]["id"].as_i64().unwrap();
    let page2 = app.api_json(&format!("/api/v1/audit?limit=3&before={last}")).await;
    assert_eq!(page2["entries"][0]["action"], "handler.secret.rotate");
    let res = app.api(Method::GET, "/api/v1/audit?from=yesterday").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let page = app.get_page("/settings/audit?actor=otto").await;
    assert!(page.contains("delivery.retry") && page.contains("status: enabled → disabled"), "{page}");
    assert!(!page.contains("handler.delete"));
    let viewer = app.browser(VIEWER.0, VIEWER.1).await;
    assert!(viewer.get_page("/settings/audit").await.contains("handler.secret.rotate"), "a viewer reads it");
}

//! The Execution Logs pages, the details with Retry, the timeline, the health
//! figures and retention — as an administrator sees them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb, flash_of},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    the_log_lists_attempts_newest_first_and_filters_them,
    details_show_what_was_sent_and_what_came_back_and_retry_works,
    the_timeline_shows_one_objects_history_across_handlers,
    the_handler_list_shows_health_at_a_glance,
    old_logs_and_finished_deliveries_are_pruned,
    the_text_search_reads_answers_and_output_a_window_at_a_time,
);

fn log_ids(page: &str) -> Vec<i64> {
    let re = regex::Regex::new(r#"<a href="/provisioning/logs/(\d+)" aria-label="Details"#).unwrap();
    re.captures_iter(page).map(|c| c[1].parse().unwrap()).collect()
}

/// Posts `n` events for objects 1..=n and waits until all are recorded.
async fn deliver(app: &TestApp, handler_id: i64, events_id: &str, n: usize) {
    for i in 1..=n {
        let (status, _) = app.post_event(&envelope(events_id, json!(i), json!({"i": i}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    app.api_until(&format!("/api/v1/handlers/{handler_id}/logs?limit=1000"), "all recorded", |l| {
        l["logs"].as_array().unwrap().len() >= n
    })
    .await;
}

async fn the_log_lists_attempts_newest_first_and_filters_them(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave(
        "/b",
        Behavior { statuses: [503].into(), only_if_body_contains: Some("\"i\":2}".into()), ..Behavior::default() },
    );
    let a = app.create_handler(http_handler("Alpha CRM", "clients.create", &sink.url("/a"), 1)).await;
    let b = app.create_handler(http_handler("Beta billing", "clients.update", &sink.url("/b"), 1)).await;
    deliver(&app, a["id"].as_i64().unwrap(), "clients.create", 55).await;
    deliver(&app, b["id"].as_i64().unwrap(), "clients.update", 3).await;
    app.sign_in().await;

    let page = app.get_page("/provisioning/logs").await;
    for column in [
        "ID",
        "Status",
        r#"Date (<span class="tz-label">UTC</span>)"#,
        "Event",
        "Handler",
        "Object ID",
        "Response Data",
        "Duration",
        "Attempt",
        "Code",
    ] {
        assert!(page.contains(&format!(">{column}</th>")), "{column}");
    }
    let ids = log_ids(&page);
    assert_eq!(ids.len(), 50, "a page of 50");
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(page.contains("Beta billing") && page.contains("Clients: update"));
    let older =
        regex::Regex::new(r#"href="(/provisioning/logs\?before=\d+)" rel="next""#).unwrap().captures(&page).unwrap()[1]
            .to_owned();
    let second = app.get_page(&older).await;
    assert_eq!(log_ids(&second).len(), 8, "58 attempts in all");
    assert!(log_ids(&second)[0] < *ids.last().unwrap());
    assert!(second.contains("rel=\"prev\""), "a way back to newer rows");

    // Per handler; by event; by status; by error text; by object; by date.
    let count = |path: String| {
        let app = &app;
        async move { log_ids(&app.get_page(&path).await).len() }
    };
    assert_eq!(count(format!("/provisioning/{}/logs", b["id"])).await, 3);
    assert_eq!(count("/provisioning/logs?event=clients.update".into()).await, 3);
    let failed = app.get_page("/provisioning/logs?outcome=fail").await;
    assert_eq!(log_ids(&failed).len(), 1);
    assert!(failed.contains("http_error") && failed.contains("503"));
    assert_eq!(count("/provisioning/logs?outcome=http_error".into()).await, 1);
    assert_eq!(count("/provisioning/logs?outcome=success".into()).await, 50, "a full page of the 57 successes");
    assert_eq!(count(format!("/provisioning/{}/logs?outcome=success", b["id"])).await, 2);
    assert_eq!(count("/provisioning/logs?q=503".into()).await, 1);
    assert_eq!(count("/provisioning/logs?q=nothing%20like%20this".into()).await, 0);
    assert_eq!(count("/provisioning/logs?object_id=2".into()).await, 2, "object 2 of each handler");
    assert_eq!(count(format!("/provisioning/{}/logs?object_id=2&outcome=fail", b["id"])).await, 1);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(count(format!("/provisioning/logs?from={today}&to={today}")).await, 50);
    assert_eq!(count("/provisioning/logs?to=2000-01-01".into()).await, 0);
    assert_eq!(count("/provisioning/logs?from=2000-01-01T00:00".into()).await, 50);
    for bad in [
        "/provisioning/logs?outcome=meh",
        "/provisioning/logs?event=x.y",
        "/provisioning/logs?from=yesterday",
        "/provisioning/logs?before=abc",
    ] {
        assert_eq!(app.get(bad).await.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

async fn details_show_what_was_sent_and_what_came_back_and_retry_works(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/h", Behavior { statuses: [500].into(), ..Behavior::default() });
    let h = app.create_handler(http_handler("Provisioner", "clients.create", &sink.url("/h"), 1)).await;
    let (_, answer) = app.post_event(&envelope("clients.create", json!(12), json!({"name": "Acme <Ltd>"}))).await;
    let event = app
        .api_until(&format!("/api/v1/events/{}", answer["id"]), "failed", |e| e["deliveries"][0]["state"] == "failed")
        .await;
    let delivery = event["deliveries"][0]["id"].as_i64().unwrap();
    let csrf = app.sign_in().await;
    let list = app.get_page(&format!("/provisioning/{}/logs", h["id"])).await;
    let log_id = log_ids(&list)[0];

    let page = app.get_page(&format!("/provisioning/logs/{log_id}")).await;
    assert!(page.contains("<title>Execution Log #"));
    assert!(
        page.contains("&#34;name&#34;: &#34;Acme &#60;Ltd&#62;&#34;")
            || page.contains("&quot;name&quot;: &quot;Acme &lt;Ltd&gt;&quot;"),
        "the payload, pretty-printed and escaped"
    );
    assert!(page.contains("webhook-signature") && page.contains("webhook-id"), "the request headers");
    assert!(
        page.contains("{&#34;answered&#34;:500}") || page.contains("{&quot;answered&quot;:500}"),
        "the response body"
    );
    assert!(page.contains("HTTP 500"), "the error");
    assert!(page.contains(&format!("Delivery #{delivery}: <span id=\"delivery-state\">failed after 1 attempt</span>")));
    assert!(page.contains("Retry delivery"));

    // Retry: refused without the token; with it, back here and a new attempt shows.
    let res = app.post_form(&format!("/provisioning/deliveries/{delivery}/retry"), &[("return_to", "/x")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let back = format!("/provisioning/logs/{log_id}");
    let res = app
        .post_form(
            &format!("/provisioning/deliveries/{delivery}/retry"),
            &[("csrf_token", &csrf), ("return_to", &back)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(res.headers()["location"], back.as_str());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = app.get_page(&back).await;
        if page.contains("<span id=\"delivery-state\">succeeded</span>") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "the retry did not succeed: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts = regex::Regex::new(r#"<td class="num"><a href="/provisioning/logs/\d+">(\d+)</a></td>"#).unwrap();
    let numbers: Vec<String> = attempts.captures_iter(&page).map(|c| c[1].to_owned()).collect();
    assert_eq!(numbers, ["1", "2"], "both attempts listed");
    assert!(page.contains("Send again…"), "finished again, so it can be retried again, asking first");
    // It succeeded: without confirmation, a retry only asks (the page without JavaScript).
    let delivery =
        regex::Regex::new(r#"/provisioning/deliveries/(\d+)/retry"#).unwrap().captures(&page).unwrap()[1].to_owned();
    let path = format!("/provisioning/deliveries/{delivery}/retry");
    let res = app.post_form(&path, &[("csrf_token", csrf.as_str())]).await;
    assert_eq!(res.status(), StatusCode::OK, "asks first");
    let ask = res.text().await.unwrap();
    assert!(ask.contains("succeeded already") && ask.contains("sends its event to the handler again"), "{ask}");
    assert_eq!(
        flash_of(&app.get_page("/provisioning").await),
        None,
        "the retry's message was shown once, on the details page"
    );
    assert_eq!(app.get("/provisioning/logs/999999").await.status(), StatusCode::NOT_FOUND);
}

async fn the_timeline_shows_one_objects_history_across_handlers(db: TestDb) {
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("CRM", "clients.create", &sink.url("/crm"), 1)).await;
    app.create_handler(http_handler("Switch", "clients.update", &sink.url("/switch"), 1)).await;
    app.create_handler(http_handler("Accounts", "clients.accounts.create", &sink.url("/acc"), 1)).await;
    for (events_id, object) in
        [("clients.create", 12), ("clients.create", 13), ("clients.update", 12), ("clients.accounts.create", 12)]
    {
        app.post_event(&envelope(events_id, json!(object), json!({}))).await;
    }
    // About client 12 too (DESIGN §3.1), though no handler takes it.
    app.post_event(&envelope("clients.custom_fields.update", json!(12), json!({"vip": true}))).await;
    sink.wait_until(Duration::from_secs(10), "4 deliveries", |r| r.len() >= 4).await;
    app.sign_in().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = app.get_page("/provisioning/timeline?entity=clients&object_id=12").await;
        if page.matches("class=\"outcome ok\"").count() >= 2 {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "attempts not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(page.contains("<title>Timeline of clients 12"));
    let created = page.find("Clients: create</strong>").expect("the create event");
    let updated = page.find("Clients: update</strong>").expect("the update event");
    assert!(created < updated, "in time order");
    assert!(page.contains("CRM") && page.contains("Switch"), "attempts of every handler");
    assert!(!page.contains("Accounts: create"), "another entity's object 12 is another object");
    let fields = page.find("Clients: custom fields update</strong>").expect("the client's custom fields event");
    assert!(updated < fields, "in time order");
    assert_eq!(page.matches("event received").count(), 3, "object 13 is not shown");
    // Reachable from a log row, and by search.
    let logs = app.get_page("/provisioning/logs").await;
    assert!(
        logs.contains("href=\"/provisioning/timeline?entity=clients&#38;object_id=12\"")
            || logs.contains("href=\"/provisioning/timeline?entity=clients&amp;object_id=12\"")
    );
    let search = app.get_page("/provisioning/timeline").await;
    assert!(search.contains("<label for=\"t-object\">Object ID</label>"));
    assert_eq!(app.get("/provisioning/timeline?entity=nope&object_id=1").await.status(), StatusCode::BAD_REQUEST);
    let nothing = app.get_page("/provisioning/timeline?entity=clients&object_id=404").await;
    assert!(nothing.contains("Nothing recorded about clients 404"));
}

async fn the_handler_list_shows_health_at_a_glance(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/bad", Behavior { statuses: [200, 500, 500].into(), ..Behavior::default() });
    let good = app.create_handler(http_handler("Good", "clients.create", &sink.url("/good"), 1)).await;
    let bad = app.create_handler(http_handler("Bad", "clients.update", &sink.url("/bad"), 1)).await;
    deliver(&app, good["id"].as_i64().unwrap(), "clients.create", 4).await;
    deliver(&app, bad["id"].as_i64().unwrap(), "clients.update", 3).await;
    app.sign_in().await;
    let page = app.get_page("/provisioning").await;
    assert!(page.contains(">Health (24 h)</th>"));
    assert!(page.contains("100% ok of 4"), "the good handler");
    assert!(page.contains("33% ok of 3"), "the bad one: 1 of 3");
    let badge = format!("href=\"/provisioning/deliveries?handler_id={}&amp;state=failing\">2 failing</a>", bad["id"]);
    assert!(page.contains(&badge), "the badge links to the failing deliveries");
    let failing = app.get_page(&format!("/provisioning/deliveries?handler_id={}&state=failing", bad["id"])).await;
    assert_eq!(failing.matches("<tr class=\"delivery-failed\">").count(), 2, "{failing}");
    assert!(failing.contains("failed for good") && !failing.contains("delivery-succeeded"));
    assert!(page.contains("aria-label=\"4 attempts in 24 hours, at most 4 in an hour\""));
    assert!(page.contains("<rect x=\"69\" y=\"0\" width=\"2\" height=\"16\"/>"), "this hour's bar, full height");
    assert!(page.contains("Last attempt: success</span>"), "the good handler's last attempt");
    assert_eq!(page.matches("class=\"last fail\"").count(), 1, "the bad one's last attempt failed");
    assert!(page.contains("Last attempt: http_error</span>"));
}

async fn old_logs_and_finished_deliveries_are_pruned(db: TestDb) {
    let scripts = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_with(db, scripts, |s| {
        s.log_retention = Duration::from_secs(2);
        s.retry_schedule = provisiond::domain::RetrySchedule::parse("1h").unwrap();
    })
    .await;
    let sink = Sink::start().await;
    sink.behave(
        "/h",
        Behavior { statuses: [500].into(), only_if_body_contains: Some("\"keep\"".into()), ..Behavior::default() },
    );
    let h = app.create_handler(http_handler("h", "clients.create", &sink.url("/h"), 1)).await;
    let (_, done) = app.post_event(&envelope("clients.create", json!(1), json!({"x": "done"}))).await;
    let (_, waiting) = app.post_event(&envelope("clients.create", json!(2), json!({"x": "keep"}))).await;
    app.api_until(&format!("/api/v1/handlers/{}/logs", h["id"]), "two attempts", |l| {
        l["logs"].as_array().unwrap().len() == 2
    })
    .await;
    // After the retention, the finished delivery and its event are gone; the
    // one still waiting for its retry stays, with its event.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let res = app.api(reqwest::Method::GET, &format!("/api/v1/events/{}", done["id"])).send().await.unwrap();
        if res.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the finished event was not pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let kept = app.api_json(&format!("/api/v1/events/{}", waiting["id"])).await;
    assert_eq!(kept["deliveries"][0]["state"], "pending", "unfinished work is never pruned");
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", h["id"])).await;
    assert_eq!(logs["logs"], json!([]), "old attempts are pruned");

    // A deleted handler's name and a finished bulk job go with the retention too.
    let gone = app.create_handler(http_handler("gone", "clients.update", &sink.url("/gone"), 1)).await;
    let res = app.api(reqwest::Method::DELETE, &format!("/api/v1/handlers/{}", gone["id"])).send().await.unwrap();
    assert!(res.status().is_success());
    let res = app
        .api(reqwest::Method::POST, "/api/v1/deliveries/retry")
        .json(&json!({"state": "failed", "dry_run": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    assert_eq!(count_rows(&app, "deleted_handlers"), 1, "kept for its logs meanwhile");
    while app.api_json("/api/v1/jobs").await["jobs"] != json!([]) || count_rows(&app, "deleted_handlers") > 0 {
        assert!(std::time::Instant::now() < deadline, "the deleted handler's name and the job were not pruned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows in `table` (an update that changes nothing says how many it matched).
fn count_rows(app: &TestApp, table: &str) -> usize {
    app.raw_sql(&format!("UPDATE {table} SET id = id"))
}

async fn the_text_search_reads_answers_and_output_a_window_at_a_time(db: TestDb) {
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    // A success whose answer says more than its status: no error to search.
    sink.behave(
        "/crm",
        Behavior { body: Some(b"accepted; quota exceeded for client 7".to_vec()), ..Behavior::default() },
    );
    let crm = app.create_handler(http_handler("CRM", "clients.create", &sink.url("/crm"), 1)).await;
    app.write_script("radius.sh", "#!/bin/sh\necho 'radius: user added to pool B'\n", true);
    let radius = app
        .create_handler(
            json!({"name": "radius", "events_id": "clients.update", "type": "script", "target": "radius.sh"}),
        )
        .await;
    deliver(&app, crm["id"].as_i64().unwrap(), "clients.create", 1).await;
    deliver(&app, radius["id"].as_i64().unwrap(), "clients.update", 1).await;
    app.sign_in().await;
    let found = |page: &str| log_ids(page).len();
    assert_eq!(found(&app.get_page("/provisioning/logs?q=quota%20exceeded").await), 1, "the response body");
    assert_eq!(found(&app.get_page("/provisioning/logs?q=to%20pool%20B").await), 1, "the script's output");
    assert_eq!(found(&app.get_page("/provisioning/logs?q=50%25").await), 0, "wildcards are text");

    // A long history after them: a page of a search looks at 100,000 attempts, then says where it stopped.
    app.raw_sql(
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100001)
         INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt, started_at,
             duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
         SELECT 0, 999, 0, 'clients.create', 'clients', '1', 1, CURRENT_TIMESTAMP, 1, 'success', 200, '{}', '{}', 'ok', NULL, NULL
         FROM n",
    );
    let page = app.get_page("/provisioning/logs?q=quota%20exceeded").await;
    assert_eq!(found(&page), 0, "beyond the window");
    assert!(page.contains(r#"id="search-window""#), "says where it stopped: {page}");
    let older = regex::Regex::new(r#"href="(/provisioning/logs\?q=quota\+exceeded&(?:amp;|#38;)before=\d+)""#)
        .unwrap()
        .captures(&page)
        .unwrap()[1]
        .replace("&amp;", "&")
        .replace("&#38;", "&");
    let page = app.get_page(&older).await;
    assert_eq!(found(&page), 1, "found further back: {older}");
    assert!(!page.contains(r#"id="search-window""#), "the window reached the first attempt");
    // And back up: newer windows, each page with a way on, none a dead end.
    let newer = regex::Regex::new(r#"href="([^"]+)" rel="prev""#).unwrap();
    let mut path =
        newer.captures(&page).expect("a way back to newer attempts")[1].replace("&#38;", "&").replace("&amp;", "&");
    for _ in 0..3 {
        let page = app.get_page(&path).await;
        assert_eq!(found(&page), 0, "nothing newer matches: {path}");
        match newer.captures(&page) {
            Some(next) => path = next[1].replace("&#38;", "&").replace("&amp;", "&"),
            None => break,
        }
    }
}

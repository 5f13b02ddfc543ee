//! The day after an outage, in a real headless Chromium with JavaScript, on
//! both backends: the deliveries that failed, retried in one confirmed bulk
//! action with its progress; a handler tested before it is enabled; past
//! events replayed to it; the logs searched; and the fixes an administrator
//! asked for (confirmations, the current state first, layouts at 1,024 and
//! 1,400 px, status in words, times in the browser's zone).

use std::time::Duration;

use fantoccini::Locator;
use serde_json::{Value, json};

use crate::{
    browser::Browser,
    dispatch::{envelope, http_handler},
    helpers::{TestApp, TestDb},
    on_both_backends,
    sink::{Behavior, Sink},
};

on_both_backends!(
    after_an_outage_the_failures_are_retried_in_one_confirmed_action,
    a_handler_is_tested_before_it_is_enabled_then_given_past_events,
    the_fixes_an_administrator_asked_for_hold,
    a_handler_is_paused_and_resumed_from_its_row,
    a_failing_handler_is_shown_above_the_list_and_another_is_rate_limited,
);

/// Runs `js` in the page (its `return` value).
async fn js(browser: &Browser, script: &str) -> Value {
    browser.client.execute(script, vec![]).await.unwrap()
}

async fn failed_count(app: &TestApp, handler: &Value) -> usize {
    let list = app.api_json(&format!("/api/v1/deliveries?handler_id={}&state=failed", handler["id"])).await;
    list["deliveries"].as_array().unwrap().len()
}

async fn after_an_outage_the_failures_are_retried_in_one_confirmed_action(db: TestDb) {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::with_retries(db, "").await;
    let sink = Sink::start().await;
    sink.behave("/crm", Behavior { statuses: [503; 6].into(), ..Behavior::default() });
    let crm = app.create_handler(http_handler("CRM sync", "clients.create", &sink.url("/crm"), 1)).await;
    for n in 0..6 {
        app.post_event(&envelope("clients.create", json!(100 + n), json!({"name": format!("Client {n}")}))).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while failed_count(&app, &crm).await < 6 {
        assert!(std::time::Instant::now() < deadline, "the outage's failures");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.sign_in(&app).await;
    let c = &browser.client;

    // The handler's "6 failing" badge leads to its failing deliveries.
    c.find(Locator::Css("a.badge-fail")).await.unwrap().click().await.unwrap();
    let rows = browser.wait_text("table.deliveries tbody", |t| t.matches("failed for good").count() == 6).await;
    assert_eq!(rows.matches("failed for good").count(), 6, "{rows}");
    browser.screenshot("deliveries").await;

    // Retry these…: the count first, nothing retried yet; then confirmed.
    c.find(Locator::Css("form.bulk-retry button")).await.unwrap().click().await.unwrap();
    let count = browser.text("#bulk-count").await;
    assert!(count.contains("6 deliveries match these filters"), "{count}");
    assert_eq!(failed_count(&app, &crm).await, 6, "a dry run first");
    c.find(Locator::Css("form.confirm-bulk button[type=submit]")).await.unwrap().click().await.unwrap();
    let figures = browser.wait_text("#job-figures", |t| t.starts_with("6 of 6")).await;
    assert!(figures.starts_with("6 of 6 deliveries queued again"), "{figures}");
    browser.screenshot("bulk-retry").await;
    assert_eq!(browser.wait_text("#job-state", |t| t == "Done").await, "Done");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.received_on("/crm").len() < 12 {
        assert!(std::time::Instant::now() < deadline, "every delivery attempted again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An attempt's page after the retry: the delivery's state now, first.
    c.goto(&app.url("/provisioning/logs?outcome=fail")).await.unwrap();
    c.find(Locator::Css("table.logs tbody a.outcome")).await.unwrap().click().await.unwrap();
    let now = browser.wait_text("#now-state", |t| t.contains("succeeded")).await;
    assert!(now.contains("is now succeeded"), "{now}");
    let first_card = js(&browser, "return document.querySelector('.detail-grid section h2').textContent").await;
    assert!(first_card.as_str().unwrap().starts_with("Delivery #"), "the delivery first: {first_card}");
    // It succeeded: a retry asks, saying it sends the event again; declined, nothing happens.
    c.find(Locator::Css("form.retry button")).await.unwrap().click().await.unwrap();
    let question = c.get_alert_text().await.unwrap();
    assert!(question.contains("succeeded already") && question.contains("sends its event"), "{question}");
    c.dismiss_alert().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received_on("/crm").len(), 12, "declined: not sent again");
    browser.close().await;
}

async fn a_handler_is_tested_before_it_is_enabled_then_given_past_events(db: TestDb) {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    sink.behave("/new", Behavior { body: Some(b"client 12 provisioned".to_vec()), ..Behavior::default() });
    // Last week's events, and a new handler, disabled until it is tried.
    for n in 0..3 {
        app.post_event(&envelope("clients.create", json!(n), json!({"name": format!("Client {n}")}))).await;
    }
    let mut body = http_handler("New CRM", "clients.create", &sink.url("/new"), 1);
    body["status"] = json!("disabled");
    let handler = app.create_handler(body).await;
    browser.sign_in(&app).await;
    let c = &browser.client;

    c.find(Locator::Css(&format!("a[href=\"/provisioning/{}/test\"]", handler["id"])))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let sample = c.find(Locator::Id("test-payload")).await.unwrap().prop("value").await.unwrap().unwrap();
    assert!(sample.contains("\"events_id\": \"clients.create\""), "{sample}");
    c.find(Locator::Css("form.test-form button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.wait_text("#test-outcome", |t| t == "success").await, "success");
    assert_eq!(browser.text("#test-status").await, "200");
    assert_eq!(browser.text("#test-response").await, "client 12 provisioned");
    browser.screenshot("test-event").await;
    assert_eq!(sink.received_on("/new").len(), 1);

    // Enabled, it gets last week's events by a replay from the events list.
    let res = app
        .api(reqwest::Method::PATCH, &format!("/api/v1/handlers/{}", handler["id"]))
        .json(&json!({"status": "enabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    c.goto(&app.url("/provisioning/events?event=clients.create")).await.unwrap();
    c.find(Locator::Id("replay-handler")).await.unwrap().select_by_value(&handler["id"].to_string()).await.unwrap();
    c.find(Locator::Css("form.replay button")).await.unwrap().click().await.unwrap();
    assert!(browser.text("#bulk-count").await.contains("3 events match"));
    c.find(Locator::Css("form.confirm-bulk button[type=submit]")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.wait_text("#job-state", |t| t == "Done").await, "Done");
    sink.wait_for("/new", 4, Duration::from_secs(10)).await;

    // The logs' search reads what came back.
    c.goto(&app.url("/provisioning/logs")).await.unwrap();
    c.find(Locator::Css("#log-search summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("l-q")).await.unwrap().send_keys("client 12 provisioned").await.unwrap();
    c.find(Locator::Css("#log-search button[type=submit]")).await.unwrap().click().await.unwrap();
    let rows = browser.wait_text("table.logs tbody", |t| t.contains("New CRM")).await;
    assert_eq!(rows.matches("New CRM").count(), 4, "the test and the three replayed: {rows}");
    browser.close().await;
}

async fn the_fixes_an_administrator_asked_for_hold(db: TestDb) {
    let Some(browser) = Browser::start_in_zone(Some("Asia/Tokyo")).await else { return };
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    // A long list: 60 handlers, the last with a long URL.
    for n in 0..59 {
        app.create_handler(http_handler(&format!("h{n:02}"), "clients.create", &sink.url(&format!("/h{n}")), 1)).await;
    }
    let long = format!("{}/api/v2/provisioning/clients/create-and-notify?tenant=acme&region=eu-west", sink.url(""));
    let last = app.create_handler(http_handler("Last one", "clients.update", &long, 5)).await;
    browser.sign_in(&app).await;
    let c = &browser.client;

    // Status in words, a disabled row dimmed; a toggle comes back to its row.
    c.goto(&app.url("/provisioning?page=2")).await.unwrap();
    let row = format!("#handler-{}", last["id"]);
    assert!(browser.text(&format!("{row} .status-text")).await == "Enabled");
    js(&browser, &format!("document.querySelector('{row}').scrollIntoView(); return 0")).await;
    c.find(Locator::Css(&format!("{row} button.status-icon"))).await.unwrap().click().await.unwrap();
    browser.wait_text("p.flash", |t| t.contains("now disabled")).await;
    assert!(c.current_url().await.unwrap().as_str().ends_with(&format!("page=2{row}")), "back to the row");
    assert_eq!(browser.text(&format!("{row} .status-text")).await, "Disabled");
    let shown = js(&browser, &format!(
        "const r = document.querySelector('{row}').getBoundingClientRect(); return r.top >= 0 && r.bottom <= innerHeight"
    ))
    .await;
    assert_eq!(shown, json!(true), "the toggled row is in view");
    let opacity = js(&browser, &format!("return getComputedStyle(document.querySelector('{row} td')).opacity")).await;
    assert!(opacity.as_str().unwrap().parse::<f64>().unwrap() < 1.0, "a disabled row is dimmed: {opacity}");

    // At 1,024 px the long URL wraps between its parts, never inside host:port.
    c.set_window_size(1024, 768).await.unwrap();
    let broken = js(
        &browser,
        &format!(
            "const code = document.querySelector('{row} td.target code');
         const parts = [...code.childNodes].filter(n => n.nodeType === 3);
         const lines = new Set(parts.map(n => {{ const r = document.createRange(); r.selectNodeContents(n);
             return Math.round(r.getClientRects()[0].top); }}));
         const top = (n, i) => {{ const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
             return Math.round(r.getClientRects()[0].top); }};
         const split = [];
         for (const n of parts) {{
           for (let i = 1; i < n.textContent.length; i++) {{
             if (top(n, i) !== top(n, i - 1)) split.push(n.textContent.slice(0, i) + '|' + n.textContent.slice(i));
           }}
         }}
         return [lines.size, split]"
        ),
    )
    .await;
    assert!(broken[0].as_i64().unwrap() > 1, "the URL wraps at 1,024 px: {broken}");
    // Only at a part's end — or right after a hyphen inside one, where any text may wrap —
    // never inside host:port or any other run of letters, digits, dots and colons.
    for part in broken[1].as_array().unwrap() {
        let part = part.as_str().unwrap();
        assert!(part.contains("-|") && !part.contains(':'), "broken inside {part:?}: {broken}");
    }

    // The logs' Filter drop-down fits on the screen at 1,024 and 1,400 px.
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    let named = app
        .create_handler(http_handler(
            "Billing platform CRM synchronisation for the enterprise tenants of region EU-West",
            "clients.create",
            &sink.url("/named"),
            1,
        ))
        .await;
    for (width, height, page) in [
        (1024, 768, "/provisioning/logs".to_owned()),
        (1024, 768, format!("/provisioning/{}/logs", named["id"])),
        (1400, 900, format!("/provisioning/{}/logs", named["id"])),
    ] {
        c.set_window_size(width, height).await.unwrap();
        c.goto(&app.url(&page)).await.unwrap();
        c.find(Locator::Css("#log-search summary")).await.unwrap().click().await.unwrap();
        let fits = js(&browser,
            "const r = document.querySelector('#log-search form').getBoundingClientRect();
             return [r.left >= 0, r.right <= document.documentElement.clientWidth, r.bottom <= innerHeight, Math.round(r.left), Math.round(r.right), Math.round(r.top), Math.round(r.bottom), innerHeight]",
        )
        .await;
        assert_eq!(
            &fits.as_array().unwrap()[..3],
            &[json!(true), json!(true), json!(true)],
            "{page} at {width} px: {fits}"
        );
    }

    // The form's status/priority/timeout row stays aligned beside a message.
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&app.url(&format!("/provisioning/{}/edit", last["id"]))).await.unwrap();
    let priority = c.find(Locator::Id("priority")).await.unwrap();
    priority.clear().await.unwrap();
    priority.send_keys("-5").await.unwrap();
    c.find(Locator::Css("#handler-form button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.text("#priority-error").await;
    let tops = js(&browser,
        "return ['status', 'priority', 'timeout_ms'].map(id => Math.round(document.getElementById(id).getBoundingClientRect().top))",
    )
    .await;
    let tops: Vec<i64> = tops.as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect();
    assert!(tops.windows(2).all(|w| w[0] == w[1]), "inputs side by side: {tops:?}");

    // Rotating the secret in the pop-up asks first; declined, the secret stays.
    c.goto(&app.url("/provisioning?page=2")).await.unwrap();
    c.find(Locator::Css(&format!("{row} a[data-dialog]"))).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("dialog[open] .secret button")).await.unwrap().click().await.unwrap();
    let question = c.get_alert_text().await.unwrap();
    assert!(question.starts_with("Replace the signing secret of “Last one”?"), "{question}");
    c.dismiss_alert().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stored = app.api_json(&format!("/api/v1/handlers/{}", last["id"])).await;
    assert_eq!(stored["secret"], last["secret"], "declined: not rotated");

    // A disabled handler created says what it does; an error page keeps the navigation.
    c.goto(&app.url("/provisioning/new")).await.unwrap();
    c.find(Locator::Id("name")).await.unwrap().send_keys("Parked").await.unwrap();
    c.find(Locator::Id("events_id")).await.unwrap().select_by_value("clients.delete").await.unwrap();
    c.find(Locator::Id("target")).await.unwrap().send_keys("127.0.0.1:5000/parked").await.unwrap();
    c.find(Locator::Id("status")).await.unwrap().select_by_value("disabled").await.unwrap();
    c.find(Locator::Css("#handler-form button[type=submit]")).await.unwrap().click().await.unwrap();
    let flash = browser.wait_text("p.flash", |t| t.contains("Parked")).await;
    assert!(flash.contains("disabled: it receives no event until you enable it"), "{flash}");
    c.goto(&app.url("/provisioning/987654/edit")).await.unwrap();
    assert!(browser.text("main h1").await.contains("Not Found"));
    assert!(c.find(Locator::Css("nav a[href=\"/provisioning/deliveries\"]")).await.is_ok(), "the navigation stays");

    // Times: UTC, labelled, unless the user picks the browser's zone (here Tokyo, UTC+9).
    c.goto(&app.url("/provisioning/logs")).await.unwrap();
    let utc = browser.text("table.logs time.utc").await;
    assert_eq!(browser.text("th .tz-label").await, "UTC");
    c.find(Locator::Id("tz-toggle")).await.unwrap().click().await.unwrap();
    let local = browser.text("table.logs time.utc").await;
    assert!(local.ends_with("GMT+9"), "{local}");
    let hour = |t: &str| t[11..13].parse::<u32>().unwrap();
    assert_eq!(hour(&local), (hour(&utc) + 9) % 24, "{utc} → {local}");
    assert_eq!(browser.text("th .tz-label").await, "GMT+9");
    c.refresh().await.unwrap();
    assert!(browser.text("table.logs time.utc").await.ends_with("GMT+9"), "the choice is kept");
    c.find(Locator::Id("tz-toggle")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.text("table.logs time.utc").await, utc, "back to UTC");
    browser.close().await;
}

async fn a_handler_is_paused_and_resumed_from_its_row(db: TestDb) {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::spawn(db).await;
    let sink = Sink::start().await;
    let crm = app.create_handler(http_handler("CRM", "clients.update", &sink.url("/crm"), 1)).await;
    // A second endpoint that asks to slow down for a minute.
    sink.behave(
        "/busy",
        Behavior { statuses: [503].into(), headers: vec![("Retry-After", "60".into())], ..Behavior::default() },
    );
    app.create_handler(http_handler("Busy", "clients.create", &sink.url("/busy"), 1)).await;
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    sink.wait_for("/busy", 1, Duration::from_secs(10)).await;
    browser.sign_in(&app).await;
    let c = &browser.client;
    let row = format!("#handler-{}", crm["id"]);

    c.find(Locator::Css(&format!("{row} button.pause"))).await.unwrap().click().await.unwrap();
    browser.wait_text("p.flash", |t| t.contains("now paused")).await;
    assert_eq!(browser.text(&format!("{row} .status-text")).await, "Paused");
    assert!(c.current_url().await.unwrap().as_str().ends_with(&row), "back to the row");
    for n in 0..3 {
        app.post_event(&envelope("clients.update", json!(n), json!({}))).await;
    }
    c.refresh().await.unwrap();
    let backlog = browser.text(&format!("{row} .paused-backlog")).await;
    assert!(backlog.starts_with("paused: 3 waiting, the oldest since"), "{backlog}");
    assert!(browser.text("table.grid tbody").await.contains("cooling down until"), "the busy handler is held back");
    assert!(sink.received_on("/crm").is_empty());

    c.find(Locator::Css(&format!("{row} button.resume"))).await.unwrap().click().await.unwrap();
    browser.wait_text("p.flash", |t| t.contains("now enabled")).await;
    sink.wait_for("/crm", 3, Duration::from_secs(10)).await;
    browser.close().await;
}

/// The banner above the list names a failing handler and leads to the
/// alerts; a rate limit is set in the edit pop-up (an out-of-range one is
/// refused beside its field) and shown in the row.
async fn a_failing_handler_is_shown_above_the_list_and_another_is_rate_limited(db: TestDb) {
    let Some(browser) = Browser::start().await else { return };
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.alert_failing_after = 2).await;
    let sink = Sink::start().await;
    sink.behave("/down", Behavior { statuses: [503; 6].into(), ..Behavior::default() });
    app.create_handler(http_handler("Down CRM", "clients.create", &sink.url("/down"), 1)).await;
    let fragile = app.create_handler(http_handler("Fragile", "clients.update", &sink.url("/fragile"), 1)).await;
    app.post_event(&envelope("clients.create", json!(1), json!({}))).await;
    sink.wait_for("/down", 2, Duration::from_secs(10)).await;
    browser.sign_in(&app).await;
    let c = &browser.client;

    let banner = browser.wait_text(".alert-banner", |t| t.contains("Down CRM is failing")).await;
    assert!(banner.contains("attempts in a row have failed, since"), "{banner}");
    browser.screenshot("alerts-banner").await;
    c.find(Locator::LinkText("All alerts")).await.unwrap().click().await.unwrap();
    let alerts = browser.wait_text("table.alerts tbody", |t| t.contains("handler.failing")).await;
    assert!(alerts.contains("Down CRM") && alerts.contains("not sent: no PROVISIOND_ALERT_URL is set"), "{alerts}");
    assert_eq!(browser.text("nav a[aria-current=page]").await, "Provisioning API", "a page of the section");
    // Also reached from under the list's heading, banner or not.
    c.goto(&app.url("/provisioning")).await.unwrap();
    c.find(Locator::Css("p.note a[href='/provisioning/alerts']")).await.unwrap();

    // The rate limit, in the edit pop-up.
    c.goto(&app.url("/provisioning")).await.unwrap();
    let row = format!("#handler-{}", fragile["id"]);
    c.find(Locator::Css(&format!("{row} a[data-dialog]"))).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("dialog[open] #handler-form")).await.unwrap();
    let field = c.find(Locator::Css("dialog #rate_limit")).await.unwrap();
    field.send_keys("20000").await.unwrap();
    c.find(Locator::Css("dialog button[type=submit]")).await.unwrap().click().await.unwrap();
    let error = browser.wait_text("dialog[open] #rate_limit-error", |t| !t.is_empty()).await;
    assert!(error.contains("from 0.1 to 10000"), "{error}");
    let field = c.find(Locator::Css("dialog #rate_limit")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys("2.5").await.unwrap();
    c.find(Locator::Css("dialog button[type=submit]")).await.unwrap().click().await.unwrap();
    browser.wait_text("p.flash", |t| t.contains("saved") || t.contains("updated")).await;
    // (Badges are shown in capitals.)
    let shown = browser.text(&row).await;
    assert!(shown.to_lowercase().contains("at most 2.5/s"), "{shown}");
    browser.close().await;
}

//! The handler pages in a real headless Chromium, with JavaScript: the pop-up
//! form, its messages, the drop-down, toggling and deleting.

use std::{process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, ADMIN_USER, Backend, TestApp, TestDb};

/// A chromedriver and a headless Chromium session; both end with it.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// `None` with a note on a developer machine without chromedriver; a panic
    /// when CI requires browser tests (`E2E_REQUIRED=1`).
    pub async fn start() -> Option<Self> {
        Self::start_in_zone(None).await
    }

    /// [`Browser::start`] with the browser in time zone `zone` (`TZ`), when given.
    pub async fn start_in_zone(zone: Option<&str>) -> Option<Self> {
        let required = std::env::var("E2E_REQUIRED").is_ok_and(|v| v == "1");
        let driver_path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = tokio::process::Command::new(&driver_path);
        if let Some(zone) = zone {
            command.env("TZ", zone);
        }
        let driver = match command
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) if required => {
                panic!("browser tests required but {driver_path} cannot start: {e}")
            }
            Err(e) => {
                eprintln!("skipping a browser test: {driver_path} cannot start ({e}); install chromium-driver");
                return None;
            }
        };
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last_error = String::new();
        for _ in 0..100 {
            match ClientBuilder::rustls().expect("a TLS config").capabilities(caps.clone()).connect(&url).await {
                Ok(client) => {
                    return Some(Self { client, driver, _profile: profile });
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("chromedriver did not open a session: {last_error}");
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    pub async fn sign_in(&self, app: &TestApp) {
        let c = &self.client;
        c.goto(&app.url("/login")).await.unwrap();
        c.find(Locator::Id("username")).await.unwrap().send_keys(ADMIN_USER).await.unwrap();
        c.find(Locator::Id("password")).await.unwrap().send_keys(ADMIN_PASSWORD).await.unwrap();
        c.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
        c.wait().for_element(Locator::Css("table.grid")).await.unwrap();
    }

    /// Text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.client.wait().for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    /// Waits (up to 10 s) until the text of `css` satisfies `ok`, as a page
    /// being replaced by the next one settles; returns the last text seen.
    pub async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if ok(&text) || std::time::Instant::now() > deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG of the page as `<name>.png` in `$SCREENSHOT_DIR`, when set
    /// (the README's pictures in docs/ are made this way).
    pub async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("SCREENSHOT_DIR") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    /// The id of the element that has the keyboard focus.
    pub async fn focused_id(&self) -> String {
        let v = self
            .client
            .execute("return document.activeElement.id || document.activeElement.textContent", vec![])
            .await
            .unwrap();
        v.as_str().unwrap_or_default().trim().to_owned()
    }
}

#[tokio::test]
async fn new_handler_in_the_pop_up_with_messages_then_saved() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn(TestDb::new(Backend::Sqlite).unwrap()).await;
    browser.sign_in(&app).await;
    let c = &browser.client;

    // The pop-up opens over the list, focus on the first field.
    c.find(Locator::Css("a[data-dialog]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("dialog[open] #handler-form")).await.unwrap();
    assert_eq!(c.current_url().await.unwrap().path(), "/provisioning", "a pop-up, not a page");
    assert_eq!(browser.focused_id().await, "name");

    // Esc closes it and gives the focus back to the button.
    c.find(Locator::Css("dialog[open] #target")).await.unwrap().send_keys("\u{e00c}").await.unwrap();
    c.wait().for_element(Locator::Css("dialog:not([open])")).await.unwrap();
    assert_eq!(browser.focused_id().await, "+ New Handler");

    // An invalid form: the messages show inside the pop-up, values kept.
    c.find(Locator::Css("a[data-dialog]")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("dialog[open] #handler-form")).await.unwrap();
    c.find(Locator::Css("dialog #target")).await.unwrap().send_keys("ftp://nowhere").await.unwrap();
    c.find(Locator::Css("dialog button[type=submit]")).await.unwrap().click().await.unwrap();
    let name_error = browser.text("dialog[open] #name-error").await;
    assert_eq!(name_error, "Enter a name");
    assert_eq!(browser.text("dialog[open] #target-error").await, "Use an http:// or https:// URL, not ftp://");
    assert!(browser.text("dialog[open] #events_id-error").await.contains("Choose an event"));
    let kept = c.find(Locator::Css("dialog #target")).await.unwrap().prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("ftp://nowhere"));
    assert_eq!(browser.focused_id().await, "name", "focus goes to the first field in error");
    browser.screenshot("handler-form-errors").await;

    // Fixed and saved: back on the list with the new row and a message.
    c.find(Locator::Css("dialog #name")).await.unwrap().send_keys("Browser handler").await.unwrap();
    c.find(Locator::Css("dialog #events_id")).await.unwrap().select_by_value("clients.create").await.unwrap();
    let target = c.find(Locator::Css("dialog #target")).await.unwrap();
    target.clear().await.unwrap();
    target.send_keys("127.0.0.1:5000/api").await.unwrap();
    c.find(Locator::Css("dialog button[type=submit]")).await.unwrap().click().await.unwrap();
    let flash = browser.wait_text("p.flash", |t| t.contains("created")).await;
    assert!(flash.starts_with("Handler “Browser handler” created"), "{flash}");
    let row = browser.text("table.grid tbody tr").await;
    browser.screenshot("handler-list").await;
    assert!(row.contains("Browser handler") && row.contains("http://127.0.0.1:5000/api"), "{row}");

    // The status icon toggles; the Advanced Search drop-down filters.
    c.find(Locator::Css("button.status-icon")).await.unwrap().click().await.unwrap();
    assert_eq!(
        browser.wait_text("p.flash", |t| t.contains("disabled")).await,
        "Handler “Browser handler” is now disabled."
    );
    c.find(Locator::Css("#adv-search summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("f-status")).await.unwrap().select_by_value("enabled").await.unwrap();
    c.find(Locator::Css("#adv-search button[type=submit]")).await.unwrap().click().await.unwrap();
    c.wait().for_url(&url::Url::parse(&app.url("/provisioning?event=&type=&status=enabled")).unwrap()).await.unwrap();
    assert!(browser.text("table.grid tbody").await.contains("No handlers match this search"));

    // Delete asks first; accepting deletes.
    c.goto(&app.url("/provisioning")).await.unwrap();
    c.find(Locator::Css("a.icon.danger")).await.unwrap().click().await.unwrap();
    let question = c.get_alert_text().await.unwrap();
    assert!(question.starts_with("Delete handler “Browser handler”"), "{question}");
    c.accept_alert().await.unwrap();
    let flash = browser.wait_text("p.flash", |t| t.contains("deleted")).await;
    assert!(flash.contains("deleted"), "{flash}");
    browser.close().await;
}

#[tokio::test]
async fn find_a_failed_delivery_see_what_happened_retry_it_and_follow_the_timeline() {
    let Some(browser) = Browser::start().await else { return };
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let app = TestApp::with_retries(db, "").await;
    let sink = crate::sink::Sink::start().await;
    sink.behave("/crm", crate::sink::Behavior { statuses: [503].into(), ..Default::default() });
    app.create_handler(crate::dispatch::http_handler("CRM sync", "clients.create", &sink.url("/crm"), 1)).await;
    app.create_handler(crate::dispatch::http_handler("Switch", "clients.update", &sink.url("/switch"), 1)).await;
    let (status, answer) =
        app.post_event(&crate::dispatch::envelope("clients.create", json!(12), json!({"name": "Client 12"}))).await;
    assert_eq!(status, reqwest::StatusCode::ACCEPTED);
    app.post_event(&crate::dispatch::envelope("clients.update", json!(12), json!({"name": "Client twelve"}))).await;
    app.api_until(&format!("/api/v1/events/{}", answer["id"]), "a failed delivery", |e| {
        e["deliveries"][0]["state"] == "failed"
    })
    .await;
    browser.sign_in(&app).await;
    let c = &browser.client;

    // The Advanced Search drop-down works from the keyboard: Enter opens, Esc closes, focus returns.
    let summary = c.find(Locator::Css("#adv-search summary")).await.unwrap();
    summary.send_keys("\u{e007}").await.unwrap();
    c.wait().for_element(Locator::Css("#adv-search[open]")).await.unwrap();
    c.find(Locator::Id("f-event")).await.unwrap().send_keys("\u{e00c}").await.unwrap();
    c.wait().for_element(Locator::Css("#adv-search:not([open])")).await.unwrap();
    assert_eq!(browser.focused_id().await, "Advanced Search ▼");

    // Execution Logs: filter for the failures of object 12.
    c.find(Locator::LinkText("Execution Logs")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::Css("table.logs")).await.unwrap();
    c.find(Locator::Css("#log-search summary")).await.unwrap().click().await.unwrap();
    c.find(Locator::Id("l-outcome")).await.unwrap().select_by_value("fail").await.unwrap();
    c.find(Locator::Id("l-object")).await.unwrap().send_keys("12").await.unwrap();
    c.find(Locator::Css("#log-search button[type=submit]")).await.unwrap().click().await.unwrap();
    let rows = browser.wait_text("table.logs tbody", |t| !t.contains("Switch") && t.contains("CRM sync")).await;
    assert!(rows.contains("fail") && rows.contains("503"), "{rows}");
    browser.screenshot("execution-logs").await;

    // Details: what was sent and what came back.
    c.find(Locator::Css("table.logs tbody a.outcome")).await.unwrap().click().await.unwrap();
    let payload = browser.text("#payload").await;
    assert!(payload.contains("\"name\": \"Client 12\""), "{payload}");
    assert!(browser.text("#response").await.contains("503"));
    assert!(browser.text("#log-error").await.contains("HTTP 503"));
    assert!(browser.text("#delivery-state").await.starts_with("failed"));
    browser.screenshot("log-details").await;

    // Retry: the new attempt shows, and succeeds.
    c.find(Locator::Css("form.retry button")).await.unwrap().click().await.unwrap();
    let state = browser.wait_text("#delivery-state", |t| t == "succeeded").await;
    assert_eq!(state, "succeeded");
    let attempts = browser.text("#attempts").await;
    assert!(attempts.contains("http_error") && attempts.contains("success"), "{attempts}");

    // The object timeline: both events about client 12, every attempt.
    c.find(Locator::Css("a[href^=\"/provisioning/timeline?entity=clients\"].button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let timeline = browser.wait_text("table.timeline", |t| t.contains("Switch")).await;
    assert_eq!(timeline.matches("event received").count(), 2, "{timeline}");
    assert!(timeline.contains("CRM sync") && timeline.contains("http_error") && timeline.contains("success"));
    browser.close().await;
}

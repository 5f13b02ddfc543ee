//! Security headers and request limits: a Content-Security-Policy with no
//! inline script on every page, no caching of pages and API answers, HSTS
//! behind TLS, a 413 from `Content-Length` before reading, and a 408 for a
//! body that is too slow to arrive.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    helpers::{API_TOKEN, TestApp, TestDb},
    on_both_backends,
};

on_both_backends!(every_page_has_the_policy_and_no_inline_script, bodies_too_large_or_too_slow_are_refused);

async fn every_page_has_the_policy_and_no_inline_script(db: TestDb) {
    let (app, _) = TestApp::signed_in(db).await;
    let handler =
        app.create_handler(crate::dispatch::http_handler("h", "clients.create", "http://127.0.0.1:1/", 0)).await;
    let id = handler["id"].as_i64().unwrap();
    let pages = [
        "/login".to_owned(),
        "/provisioning".into(),
        "/provisioning/new".into(),
        format!("/provisioning/{id}/edit"),
        format!("/provisioning/{id}/delete"),
        format!("/provisioning/{id}/logs"),
        "/provisioning/logs".into(),
        "/provisioning/deliveries".into(),
        "/provisioning/events".into(),
        "/provisioning/timeline".into(),
        "/provisioning/help/handlers".into(),
        "/settings/users".into(),
        "/settings/users/1/delete".into(),
        "/settings/tokens".into(),
        "/settings/audit".into(),
        "/settings/password".into(),
        "/no/such/page".into(),
    ];
    // An inline script is a <script> without src; inline style an attribute or element; handlers on*= attributes.
    let script = regex::Regex::new(r#"(?i)<script([^>]*)>"#).unwrap();
    let inline = regex::Regex::new(r#"(?i)\son[a-z]+\s*=|\sstyle\s*=|<style|javascript:"#).unwrap();
    for path in &pages {
        let res = app.get(path).await;
        let headers = res.headers().clone();
        let csp = headers.get("content-security-policy").unwrap_or_else(|| panic!("{path} has no CSP"));
        assert_eq!(csp, provisiond::app::CONTENT_SECURITY_POLICY, "{path}");
        assert!(csp.to_str().unwrap().contains("frame-ancestors 'none'"));
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        let body = res.text().await.unwrap();
        assert!(!inline.is_match(&body), "{path} has inline script or style: {:?}", inline.find(&body));
        for tag in script.captures_iter(&body) {
            assert!(tag[1].contains("src=\"/static/"), "{path}: an inline script {}", &tag[0]);
        }
    }
    let res = app.api(Method::GET, "/api/v1/handlers").send().await.unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store", "the API");
    assert!(res.headers().get("strict-transport-security").is_none(), "no HSTS over plain HTTP");
    let res = app.get("/static/app.js").await;
    assert!(res.headers()["cache-control"].to_str().unwrap().starts_with("public"), "static files are cached");
}

/// Sends raw bytes and reads the answer's status line, within `wait`.
async fn raw(address: &str, request: &[u8], wait: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(address.trim_start_matches("http://")).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(wait, stream.read(&mut buf)).await.expect("an answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    (text.lines().next().unwrap_or_default().to_owned(), started.elapsed())
}

async fn bodies_too_large_or_too_slow_are_refused(db: TestDb) {
    let app = TestApp::spawn(db).await;
    // 413 from the header alone: not one byte of the body is sent.
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
    );
    let (status, took) = raw(&app.address, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(status.contains("413"), "{status}");
    assert!(took < Duration::from_secs(2), "answered before any body: {took:?}");
    let head = "POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10485760\r\n\r\n";
    let (status, _) = raw(&app.address, head.as_bytes(), Duration::from_secs(3)).await;
    assert!(status.contains("413"), "a form: {status}");

    // A body that trickles in is given up on (408) after the read timeout.
    let slow = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"event\":"
    );
    let (status, took) = raw(&app.address, slow.as_bytes(), Duration::from_secs(15)).await;
    assert!(status.contains("408"), "{status}");
    assert!(took >= Duration::from_secs(9), "{took:?}");
    // The server goes on serving.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
}

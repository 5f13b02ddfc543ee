//! Starting up: migrations, health, and clear errors for a bad database.

use std::time::{Duration, Instant};

use provisiond::{app::Application, config::Settings};
use reqwest::StatusCode;

use crate::{
    helpers::{TestApp, TestDb},
    on_both_backends,
};

#[test]
fn both_migration_folders_hold_the_same_names() {
    let names = |backend: &str| {
        let mut v: Vec<String> = std::fs::read_dir(format!("{}/migrations/{backend}", env!("CARGO_MANIFEST_DIR")))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert!(!names("sqlite").is_empty());
    assert_eq!(names("sqlite"), names("postgres"));
    for name in names("sqlite") {
        for backend in ["sqlite", "postgres"] {
            for file in ["up.sql", "down.sql"] {
                let path = format!("{}/migrations/{backend}/{name}/{file}", env!("CARGO_MANIFEST_DIR"));
                assert!(std::path::Path::new(&path).is_file(), "{path}");
            }
        }
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_reported_within_seconds() {
    let started = Instant::now();
    let mut s = Settings::with_database("postgres://postgres@127.0.0.1:1/nowhere");
    s.bind = "127.0.0.1:0".parse().unwrap();
    let error = Application::build(s).await.err().expect("the server does not start");
    let text = provisiond::diagnostics::cause_chain(&error);
    assert!(text.contains("cannot connect to the database") && text.to_lowercase().contains("refused"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_bad_database_url_is_named() {
    let mut s = Settings::with_database("mysql://localhost/db");
    s.bind = "127.0.0.1:0".parse().unwrap();
    let error = Application::build(s).await.err().expect("the server does not start");
    assert!(error.to_string().contains("mysql://localhost/db"), "{error}");
    // Its password is never echoed.
    let mut s = Settings::with_database("mysql://app:hunter2-secret@localhost/db");
    s.bind = "127.0.0.1:0".parse().unwrap();
    let error = Application::build(s).await.err().expect("the server does not start");
    assert!(error.to_string().contains("mysql://app:***@localhost/db"), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

/// Alerts are signed, or not sent: an alert URL without its secret stops the
/// start, saying what is missing; bad values of either are refused by name.
#[tokio::test]
async fn an_alert_url_needs_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::with_database(format!("sqlite://{}", dir.path().join("a.db").display()));
    s.bind = "127.0.0.1:0".parse().unwrap();
    s.alert_url = Some("http://127.0.0.1:9/alerts".into());
    let error = Application::build(s).await.err().expect("the server does not start");
    assert!(error.to_string().contains("PROVISIOND_ALERT_SECRET"), "{error}");
    for (flag, value) in [
        ("--alert-url", "ftp://example.com/x"),
        ("--alert-url", "not a url"),
        ("--alert-secret", "hunter2"),
        ("--alert-secret", "whsec_c2hvcnQ="),
    ] {
        let error = <Settings as clap::Parser>::try_parse_from(["provisiond", flag, value]).unwrap_err().to_string();
        assert!(error.contains(flag), "{flag} {value}: {error}");
    }
}

on_both_backends!(starts_twice_on_one_database_and_answers_health_checks);

async fn starts_twice_on_one_database_and_answers_health_checks(db: TestDb) {
    let scripts = tempfile::tempdir().unwrap();
    let settings = crate::helpers::settings(&db, scripts.path());
    // A second start on the same database finds the schema and the administrator in place.
    let first = Application::build(settings.clone()).await.expect("first start");
    drop(first);
    let app = TestApp::spawn(db).await;
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["status"], "ok");
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    app.sign_in().await;
    assert_eq!(app.get("/no/such/page").await.status(), StatusCode::NOT_FOUND);
}

/// What a visitor types reaches the server's log quoted and escaped: a user
/// name with a newline cannot forge a line of it (run as the binary, whose
/// log is what an operator reads).
#[tokio::test]
async fn a_visitors_text_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_provisiond"))
        .env("PROVISIOND_DATABASE_URL", format!("sqlite://{}", dir.path().join("p.db").display()))
        .env("PROVISIOND_BIND", format!("127.0.0.1:{port}"))
        .env("PROVISIOND_ADMIN_PASSWORD", "correct horse battery")
        .env("PROVISIOND_API_TOKEN", crate::helpers::API_TOKEN)
        .env("PROVISIOND_SCRIPTS_DIR", dir.path())
        .env("PROVISIOND_LOG", "info")
        .stdout(std::fs::File::create(dir.path().join("log")).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{address}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let login = client.get(format!("{address}/login")).send().await.unwrap().text().await.unwrap();
    let token = crate::helpers::hidden_field(&login, "csrf_token");
    let forged = "nobody\n2026-12-04T10:00:00.000000Z  INFO provisiond: signed in user=\"admin\"";
    let res = client
        .post(format!("{address}/login"))
        .form(&[("username", forged), ("password", "x"), ("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    server.kill().unwrap();
    server.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(log.contains(r#"user="nobody\n2026-12-04"#), "the name is logged escaped:\n{log}");
    assert!(!log.lines().any(|l| l.starts_with("2026-12-04T10:00:00")), "a forged line:\n{log}");
}

/// The SQLite file and its WAL are readable by the server's user only.
#[tokio::test]
async fn the_sqlite_file_and_its_wal_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(crate::helpers::Backend::Sqlite).unwrap();
    let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let app = TestApp::spawn(db).await;
    app.sign_in().await;
    for file in [path.clone(), format!("{path}-wal")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is {mode:o}");
    }
}

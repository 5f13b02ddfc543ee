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

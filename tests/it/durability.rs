//! The real binary, killed and restarted, and two processes on one PostgreSQL.

use std::{
    collections::{HashMap, HashSet},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{API_TOKEN, Backend, TestDb},
    sink::{Behavior, Sink},
};

/// A provisiond process.
struct Server {
    child: Child,
    address: String,
    log: std::path::PathBuf,
}

impl Server {
    async fn start(db: &TestDb, dir: &std::path::Path, name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_provisiond"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PROVISIOND_DATABASE_URL", &db.url)
            .env("PROVISIOND_BIND", format!("127.0.0.1:{port}"))
            .env("PROVISIOND_SCRIPTS_DIR", dir)
            .env("PROVISIOND_ADMIN_PASSWORD", "pw")
            .env("PROVISIOND_API_TOKEN", API_TOKEN)
            .env("PROVISIOND_RETRY_SCHEDULE", "100ms,100ms,100ms")
            .env("PROVISIOND_LEASE", "2s")
            .env("PROVISIOND_POLL_INTERVAL", "100ms")
            .env("PROVISIOND_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let server = Self { child, address: format!("http://127.0.0.1:{port}"), log };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(res) = client.get(format!("{}/readyz", server.address)).send().await
                && res.status() == StatusCode::OK
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} did not start: {}", std::fs::read_to_string(&server.log).unwrap_or_default());
    }

    fn kill(&mut self) {
        // SIGKILL: no chance to finish anything.
        self.child.start_kill().unwrap();
    }
}

/// Posts events 0..n (object i, data {"n": i}) from `concurrency` connections
/// to the servers in turn; returns the numbers acknowledged with 202.
async fn post_events(servers: Vec<String>, n: usize, concurrency: usize, acked: Arc<Mutex<HashSet<usize>>>) {
    let client = reqwest::Client::new();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, acked, servers) = (client.clone(), next.clone(), acked.clone(), servers.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= n {
                        break;
                    }
                    let server = &servers[i % servers.len()];
                    let body = envelope("clients.create", json!(i), json!({"n": i}));
                    let res =
                        client.post(format!("{server}/api/v1/events")).bearer_auth(API_TOKEN).json(&body).send().await;
                    if res.is_ok_and(|r| r.status() == StatusCode::ACCEPTED) {
                        acked.lock().unwrap().insert(i);
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn create_handler(server: &Server, target: &str) {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/handlers", server.address))
        .bearer_auth(API_TOKEN)
        .json(&http_handler("sink", "clients.create", target, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

fn numbers(sink: &Sink) -> HashMap<usize, usize> {
    let mut seen = HashMap::new();
    for r in sink.received_on("/h").iter().filter(|r| r.status == 200) {
        *seen.entry(r.json()["data"]["n"].as_u64().unwrap() as usize).or_default() += 1;
    }
    seen
}

async fn every_acknowledged_event_survives_a_kill(backend: Backend) {
    let Some(db) = TestDb::new(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    sink.behave("/h", Behavior { delay: Duration::from_millis(5), ..Behavior::default() });
    let mut first = Server::start(&db, dir.path(), "first").await;
    create_handler(&first, &sink.url("/h")).await;

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let posting = tokio::spawn(post_events(vec![first.address.clone()], 400, 8, acked.clone()));
    // Kill it mid-load: some events acknowledged, some delivered, some in flight.
    sink.wait_until(Duration::from_secs(20), "a few deliveries", |r| r.len() >= 40).await;
    first.kill();
    let _ = first.child.wait().await;
    posting.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 40, "the load was under way: {} acknowledged", acked.len());

    let second = Server::start(&db, dir.path(), "second").await;
    sink.wait_until(Duration::from_secs(30), "every acknowledged event", |_| {
        let seen = numbers(&sink);
        acked.iter().all(|n| seen.contains_key(n))
    })
    .await;
    drop(second);
}

#[tokio::test]
async fn every_acknowledged_event_survives_a_kill_sqlite() {
    every_acknowledged_event_survives_a_kill(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_acknowledged_event_survives_a_kill_postgres() {
    every_acknowledged_event_survives_a_kill(Backend::Postgres).await;
}

#[tokio::test]
async fn two_processes_share_the_work_and_never_attempt_a_delivery_twice() {
    let Some(db) = TestDb::new(Backend::Postgres) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let (a, b) = tokio::join!(Server::start(&db, dir.path(), "a"), Server::start(&db, dir.path(), "b"));
    create_handler(&a, &sink.url("/h")).await;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    post_events(vec![a.address.clone(), b.address.clone()], 400, 16, acked.clone()).await;
    assert_eq!(acked.lock().unwrap().len(), 400);
    sink.wait_until(Duration::from_secs(30), "all 400 events", |_| numbers(&sink).len() == 400).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = numbers(&sink);
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let ids: HashSet<String> = sink.received_on("/h").iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!(ids.len(), 400, "one webhook-id per delivery, each attempted once");
    drop((a, b));
}

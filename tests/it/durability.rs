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
pub(crate) struct Server {
    child: Child,
    pub(crate) address: String,
    log: std::path::PathBuf,
}

impl Server {
    pub(crate) async fn start(db: &TestDb, dir: &std::path::Path, name: &str) -> Self {
        Self::start_with(db, dir, name, &[]).await
    }

    /// The binary's command with the test settings, `env` added.
    fn command(db: &TestDb, dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_provisiond"));
        command
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
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .kill_on_drop(true);
        command
    }

    async fn start_with(db: &TestDb, dir: &std::path::Path, name: &str, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Self::command(db, dir, port, env)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
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

    /// Waits for `line` in the server's log (its output).
    async fn wait_for_log(&self, line: &str, within: Duration) {
        let deadline = std::time::Instant::now() + within;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.contains(line) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no `{line}` in the log within {within:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGTERM, as an operator's `systemctl stop` sends.
    #[allow(unsafe_code)]
    fn terminate(&self) {
        let pid = i32::try_from(self.child.id().unwrap()).unwrap();
        // SAFETY: kill(2) on the child this test started; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
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
    // Nothing is left unfinished on the shared database: no attempt can follow.
    crate::helpers::settled(&a.address).await;
    let seen = numbers(&sink);
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    let ids: HashSet<String> = sink.received_on("/h").iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!(ids.len(), 400, "one webhook-id per delivery, each attempted once");
    drop((a, b));
}

/// One process per SQLite file: a second start on the same file fails at
/// once, naming the file and the process that holds it; the first goes on.
#[tokio::test]
async fn a_second_process_on_one_sqlite_file_fails_at_once_naming_the_first() {
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(&db, dir.path(), "first").await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let second = Server::command(&db, dir.path(), port, &[]).stderr(Stdio::piped()).output().await.unwrap();
    assert!(!second.status.success());
    assert!(started.elapsed() < Duration::from_secs(5), "it failed at once: {:?}", started.elapsed());
    let said = String::from_utf8_lossy(&second.stderr);
    let file = db.url.strip_prefix("sqlite://").unwrap();
    assert!(said.contains(file), "the file is named: {said}");
    assert!(said.contains(&format!("process {}", first.child.id().unwrap())), "the holder is named: {said}");
    let res = reqwest::Client::new().get(format!("{}/readyz", first.address)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the first one goes on");
}

/// A handler whose endpoint never answers within the test (timeout 60 s).
async fn hung_handler(server: &Server, target: &str) -> serde_json::Value {
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/handlers", server.address))
        .bearer_auth(API_TOKEN)
        .json(&json!({"name": "hung", "events_id": "clients.create", "type": "http", "target": target, "priority": 1, "timeout_ms": 60000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    res.json().await.unwrap()
}

async fn logs_of(server: &Server, handler: &serde_json::Value) -> Vec<serde_json::Value> {
    let res = reqwest::Client::new()
        .get(format!("{}/api/v1/handlers/{}/logs", server.address, handler["id"]))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    res.json::<serde_json::Value>().await.unwrap()["logs"].as_array().unwrap().clone()
}

/// The handler's logs once its repeated attempt succeeded (10 s at most),
/// newest first, checked to be the cut-off attempt 1 and its repeat, attempt 2.
async fn cut_off_then_repeated(server: &Server, handler: &serde_json::Value) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = logs_of(server, handler).await;
        if logs.iter().any(|l| l["outcome"] == "success") || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let attempts: Vec<(i64, &str)> =
        logs.iter().map(|l| (l["attempt"].as_i64().unwrap(), l["outcome"].as_str().unwrap())).rev().collect();
    assert_eq!(attempts, [(1, "interrupted"), (2, "success")], "{logs:#?}");
    logs
}

/// At SIGTERM with an attempt that hangs and a producer on a kept-alive
/// connection: no event is acknowledged after the signal, the process exits
/// within its grace (2 s here, not actix's fixed 5 s), and the attempt cut
/// off is logged as interrupted; its repeat at the next start is attempt 2.
async fn a_stop_honours_its_grace_and_acknowledges_nothing_after_the_signal(backend: Backend) {
    let Some(db) = TestDb::new(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    sink.behave("/hang", Behavior { delay: Duration::from_secs(30), ..Behavior::default() });
    let grace = [("PROVISIOND_SHUTDOWN_GRACE", "2s"), ("PROVISIOND_LOG", "info")];
    let mut server = Server::start_with(&db, dir.path(), "first", &grace).await;
    let handler = hung_handler(&server, &sink.url("/hang")).await;
    let producer = reqwest::Client::new();
    let post = |n: u64| {
        producer
            .post(format!("{}/api/v1/events", server.address))
            .bearer_auth(API_TOKEN)
            .json(&envelope("clients.create", json!(n), json!({"n": n})))
            .send()
    };
    assert_eq!(post(0).await.unwrap().status(), StatusCode::ACCEPTED);
    sink.wait_arrivals(1, Duration::from_secs(10)).await;

    server.terminate();
    let signalled = std::time::Instant::now();
    // The signal is handled asynchronously: "after the signal" starts when
    // the server says it has seen it (a post in between is acknowledged
    // as any before the signal, and delivered).
    server.wait_for_log("stopping: no event acknowledged from now on", Duration::from_secs(2)).await;
    let mut acknowledged_after = Vec::new();
    for n in 1..=20 {
        if let Ok(res) = post(n).await
            && res.status() == StatusCode::ACCEPTED
        {
            acknowledged_after.push(n);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = tokio::time::timeout(Duration::from_secs(10), server.child.wait()).await.expect("it exits").unwrap();
    let took = signalled.elapsed().max(Duration::from_millis(1));
    eprintln!("SIGTERM with an attempt hanging, grace 2 s: exited after {took:?}");
    assert!(status.success(), "{}", std::fs::read_to_string(&server.log).unwrap_or_default());
    assert!(took < Duration::from_millis(3500), "exited {took:?} after SIGTERM, grace 2 s");
    assert!(acknowledged_after.is_empty(), "acknowledged after the signal: {acknowledged_after:?}");

    sink.behave("/hang", Behavior::default());
    let second = Server::start_with(&db, dir.path(), "second", &grace).await;
    sink.wait_for("/hang", 1, Duration::from_secs(10)).await;
    let logs = cut_off_then_repeated(&second, &handler).await;
    assert!(logs[1]["error"].as_str().unwrap().contains("grace"), "{}", logs[1]);
}

#[tokio::test]
async fn a_stop_honours_its_grace_and_acknowledges_nothing_after_the_signal_sqlite() {
    a_stop_honours_its_grace_and_acknowledges_nothing_after_the_signal(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_stop_honours_its_grace_and_acknowledges_nothing_after_the_signal_postgres() {
    a_stop_honours_its_grace_and_acknowledges_nothing_after_the_signal(Backend::Postgres).await;
}

/// kill -9 while an attempt hangs, with the default 30 s lease: the next
/// start attempts it again at once (on PostgreSQL too: the dead process has
/// no connection open), and the logs show the attempt cut off as
/// interrupted, its repeat as attempt 2.
async fn a_start_after_a_kill_takes_the_cut_off_attempt_over_at_once(backend: Backend) {
    let Some(db) = TestDb::new(backend) else { return };
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    sink.behave("/hang", Behavior { delay: Duration::from_secs(30), ..Behavior::default() });
    let lease = [("PROVISIOND_LEASE", "30s")];
    let mut first = Server::start_with(&db, dir.path(), "first", &lease).await;
    let handler = hung_handler(&first, &sink.url("/hang")).await;
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/events", first.address))
        .bearer_auth(API_TOKEN)
        .json(&envelope("clients.create", json!(1), json!({"n": 1})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    sink.wait_arrivals(1, Duration::from_secs(10)).await;
    first.kill();
    let _ = first.child.wait().await;

    sink.behave("/hang", Behavior::default());
    let restarted = std::time::Instant::now();
    let second = Server::start_with(&db, dir.path(), "second", &lease).await;
    sink.wait_for("/hang", 1, Duration::from_secs(10)).await;
    eprintln!(
        "{backend:?}: a kill -9, then a start: the cut-off attempt went again {:?} after the start",
        restarted.elapsed()
    );
    assert!(restarted.elapsed() < Duration::from_secs(8), "not after the 30 s lease");
    cut_off_then_repeated(&second, &handler).await;
}

#[tokio::test]
async fn a_start_after_a_kill_takes_the_cut_off_attempt_over_at_once_sqlite() {
    a_start_after_a_kill_takes_the_cut_off_attempt_over_at_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_start_after_a_kill_takes_the_cut_off_attempt_over_at_once_postgres() {
    a_start_after_a_kill_takes_the_cut_off_attempt_over_at_once(Backend::Postgres).await;
}

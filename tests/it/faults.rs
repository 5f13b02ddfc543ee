//! The database failing under provisiond: PostgreSQL restarting (a proxy that
//! cuts every connection and refuses new ones for a while), SQLite's disk
//! filling up. What producers and operators see: statuses, how long until it
//! serves again by itself, every acknowledged event delivered.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{API_TOKEN, Backend, TestApp, TestDb},
    proxy::Proxy,
    sink::{Behavior, Sink},
};

/// A server on a fresh PostgreSQL database, reached through a proxy.
async fn app_behind_proxy() -> Option<(TestApp, Proxy)> {
    let db = TestDb::new(Backend::Postgres)?;
    let upstream = url::Url::parse(&db.url).unwrap();
    let proxy = Proxy::start(format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(5432))).await;
    let url = proxy.url_through(&db.url);
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.database_url = url).await;
    Some((app, proxy))
}

/// One post: its status, how long its answer took, and its JSON.
async fn post(
    client: &reqwest::Client,
    app: &str,
    n: u64,
) -> (StatusCode, Duration, Option<String>, serde_json::Value) {
    let started = Instant::now();
    let res = client
        .post(format!("{app}/api/v1/events"))
        .bearer_auth(API_TOKEN)
        .json(&envelope("clients.create", json!(n), json!({"n": n})))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    (status, started.elapsed(), retry_after, body)
}

/// What producers saw: every answer, by number posted.
#[derive(Default)]
struct Answers {
    acked: HashSet<u64>,
    /// (status, when it was answered, how long it took)
    all: Vec<(StatusCode, Instant, Duration)>,
}

/// Posts from `tasks` connections until `until` is set.
fn keep_posting(
    app: String,
    tasks: u64,
    until: Arc<std::sync::atomic::AtomicBool>,
) -> (Arc<Mutex<Answers>>, Vec<tokio::task::JoinHandle<()>>) {
    let answers = Arc::new(Mutex::new(Answers::default()));
    let handles = (0..tasks)
        .map(|t| {
            let (app, answers, until) = (app.clone(), answers.clone(), until.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut n = t;
                while !until.load(std::sync::atomic::Ordering::SeqCst) {
                    let (status, took, retry_after, body) = post(&client, &app, n).await;
                    if status == StatusCode::SERVICE_UNAVAILABLE {
                        assert!(retry_after.is_some(), "a 503 says when to try again");
                        let error = body["error"].as_str().unwrap_or_default();
                        assert!(error.contains("database is unavailable"), "{body}");
                    }
                    {
                        let mut a = answers.lock().unwrap();
                        if status == StatusCode::ACCEPTED {
                            a.acked.insert(n);
                        }
                        a.all.push((status, Instant::now(), took));
                    }
                    n += tasks;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    (answers, handles)
}

async fn readyz(app: &TestApp) -> (StatusCode, Duration) {
    let started = Instant::now();
    let status = app.get("/readyz").await.status();
    (status, started.elapsed())
}

/// Waits until every number in `acked` has reached the sink.
async fn all_delivered(sink: &Sink, acked: &HashSet<u64>, within: Duration) {
    sink.wait_until(within, &format!("every one of the {} acknowledged events", acked.len()), |received| {
        let seen: HashSet<u64> =
            received.iter().filter(|r| r.status == 200).map(|r| r.json()["data"]["n"].as_u64().unwrap()).collect();
        acked.is_subset(&seen)
    })
    .await;
}

/// PostgreSQL restarts under load (every connection cut, none accepted for
/// 3 s): producers get 503 with Retry-After within a bounded wait, never a
/// 500; `/readyz` answers 503 in under a second; once the database is back,
/// provisiond serves again within seconds by itself, and every acknowledged
/// event is delivered.
#[tokio::test]
async fn a_postgres_restart_under_load_is_served_through_and_recovered_from() {
    let Some((app, proxy)) = app_behind_proxy().await else { return };
    let sink = Sink::start().await;
    app.create_handler(http_handler("sink", "clients.create", &sink.url("/h"), 1)).await;
    let until = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (answers, posting) = keep_posting(app.address.clone(), 4, until.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;

    proxy.cut();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ready, took) = readyz(&app).await;
    assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_secs(1), "/readyz answered in {took:?}");
    tokio::time::sleep(Duration::from_millis(2700)).await;
    proxy.heal();
    let healed = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    until.store(true, std::sync::atomic::Ordering::SeqCst);
    for p in posting {
        p.await.unwrap();
    }

    let answers = std::mem::take(&mut *answers.lock().unwrap());
    let statuses: HashSet<u16> = answers.all.iter().map(|(s, _, _)| s.as_u16()).collect();
    assert!(statuses.is_subset(&HashSet::from([202, 503])), "producers saw only 202 and 503: {statuses:?}");
    assert!(statuses.contains(&503), "the outage was seen");
    let slowest = answers.all.iter().map(|(_, _, took)| *took).max().unwrap();
    assert!(slowest < Duration::from_secs(4), "every answer came within a bounded wait; the slowest took {slowest:?}");
    let back =
        answers.all.iter().find(|(s, at, _)| *s == StatusCode::ACCEPTED && *at > healed).map(|(_, at, _)| *at - healed);
    let back = back.expect("events are accepted again after the database is back");
    let failing_after =
        answers.all.iter().filter(|(s, at, _)| *s != StatusCode::ACCEPTED && *at > healed + back).count();
    eprintln!("PostgreSQL restart under load: accepting events again {back:?} after the database came back");
    assert!(back < Duration::from_secs(5), "serving again {back:?} after the database came back");
    assert_eq!(failing_after, 0, "once serving again, every post is accepted");
    assert_eq!(readyz(&app).await.0, StatusCode::OK);
    all_delivered(&sink, &answers.acked, Duration::from_secs(30)).await;
}

/// The same restart while nothing happens: provisiond notices by itself and
/// serves the first post after the database is back, and delivers it.
#[tokio::test]
async fn a_postgres_restart_while_idle_is_recovered_from_by_itself() {
    let Some((app, proxy)) = app_behind_proxy().await else { return };
    let sink = Sink::start().await;
    app.create_handler(http_handler("sink", "clients.create", &sink.url("/h"), 1)).await;
    let client = reqwest::Client::new();
    let (status, _, _, first) = post(&client, &app.address, 1).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.api_until(&format!("/api/v1/events/{}", first["id"]), "the first event delivered", |e| {
        e["deliveries"][0]["state"] == "succeeded"
    })
    .await;

    proxy.outage(Duration::from_secs(3)).await;
    let healed = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut n = 2;
    let back = loop {
        let (status, _, _, body) = post(&client, &app.address, n).await;
        if status == StatusCode::ACCEPTED {
            break healed.elapsed();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            healed.elapsed() < Duration::from_secs(10),
            "still refused {:?} after the database came back",
            healed.elapsed()
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "PostgreSQL restart while idle: accepting events again {back:?} after the database came back ({} refused)",
        n - 2
    );
    assert!(back < Duration::from_secs(5), "serving again {back:?} after the database came back");
    let delivered = sink.wait_for("/h", 2, Duration::from_secs(10)).await;
    assert_eq!(delivered[1].json()["data"]["n"], json!(n));
}

/// The result of an attempt that cannot be written (the database went away
/// while the handler answered) is written once it is back: the delivery is
/// not held in flight, and the object's next event goes after it.
#[tokio::test]
async fn an_attempt_whose_result_cannot_be_written_is_recorded_once_the_database_is_back() {
    let Some((app, proxy)) = app_behind_proxy().await else { return };
    let sink = Sink::start().await;
    sink.behave("/slow", Behavior { delay: Duration::from_millis(1500), ..Behavior::default() });
    app.create_handler(http_handler("slow", "clients.create", &sink.url("/slow"), 1)).await;
    let client = reqwest::Client::new();
    let first = app.post_event(&envelope("clients.create", json!(7), json!({"n": 1}))).await.1;
    sink.wait_arrivals(1, Duration::from_secs(10)).await;
    // The second event of the object waits behind the first's attempt.
    assert_eq!(post(&client, &app.address, 7).await.0, StatusCode::ACCEPTED);
    // The handler answers while the database is away; its result waits.
    proxy.outage(Duration::from_secs(4)).await;
    let healed = Instant::now();
    let n_of = |r: &crate::sink::Received| r.json()["data"]["n"].as_u64().unwrap();
    let received =
        sink.wait_until(Duration::from_secs(20), "the object's next event", |r| r.iter().any(|r| n_of(r) == 7)).await;
    eprintln!(
        "result unrecorded across a restart: the object's next event went {:?} after the database came back",
        healed.elapsed()
    );
    let next = received.iter().find(|r| n_of(r) == 7).unwrap();
    for first in received.iter().filter(|r| n_of(r) == 1) {
        assert!(first.ended <= next.started, "the object's next event went only after the first had been answered");
    }
    let event = app
        .api_until(&format!("/api/v1/events/{}", first["id"]), "the first delivery finished", |e| {
            e["deliveries"][0]["state"] == "succeeded"
        })
        .await;
    let logs = app.api_json(&format!("/api/v1/handlers/{}/logs", event["deliveries"][0]["handler_id"])).await;
    let outcomes: Vec<&str> = logs["logs"].as_array().unwrap().iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    // If the wait outlasted the lease, the attempt was made again: its first
    // try is logged as interrupted or with its late result, never lost.
    assert!(outcomes.contains(&"success"), "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| ["success", "interrupted"].contains(o)),
        "every attempt is logged as it ended: {outcomes:?}"
    );
}

/// SQLite's disk fills up (the file reaches `PROVISIOND_SQLITE_MAX_BYTES`,
/// which fails writes as a full disk does): producers get 503 with
/// Retry-After, not 500; once space is freed, provisiond serves again by
/// itself, every acknowledged event is delivered and nothing stays in flight.
#[tokio::test]
async fn a_full_sqlite_disk_is_answered_503_and_recovered_from_once_space_is_freed() {
    use diesel::{Connection, RunQueryDsl, SqliteConnection, connection::SimpleConnection};
    let db = TestDb::new(Backend::Sqlite).unwrap();
    let sink = Sink::start().await;
    let app = TestApp::spawn(db).await;
    let handler = app.create_handler(http_handler("sink", "clients.create", &sink.url("/h"), 1)).await;
    let db = app.stopped().await;
    // Room to free later: 4 MB that another program holds in the file.
    let path = db.url.strip_prefix("sqlite://").unwrap().to_owned();
    let mut other = SqliteConnection::establish(&path).unwrap();
    other.batch_execute("PRAGMA busy_timeout = 10000").unwrap();
    other
        .batch_execute("CREATE TABLE other_data (b BLOB); INSERT INTO other_data VALUES (zeroblob(4000000));")
        .unwrap();
    other.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let app = TestApp::spawn_with(db, tempfile::tempdir().unwrap(), |s| s.sqlite_max_bytes = size + 200_000).await;

    let client = reqwest::Client::new();
    let big = "x".repeat(20_000);
    let mut acked = HashSet::new();
    let mut refused = None;
    for n in 0..400u64 {
        let res = client
            .post(app.url("/api/v1/events"))
            .bearer_auth(API_TOKEN)
            .json(&envelope("clients.create", json!(n), json!({"n": n, "pad": big})))
            .send()
            .await
            .unwrap();
        match res.status() {
            StatusCode::ACCEPTED => {
                acked.insert(n);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(res.headers().contains_key("retry-after"));
                let body: serde_json::Value = res.json().await.unwrap();
                assert!(body["error"].as_str().unwrap().contains("database is unavailable"), "{body}");
                refused = Some(n);
                break;
            }
            other => panic!("event {n}: {other} {}", res.text().await.unwrap()),
        }
    }
    let refused = refused.expect("the file filled up");
    assert!(!acked.is_empty());
    assert_eq!(readyz(&app).await.0, StatusCode::OK, "reads still work");

    // Space comes back.
    other.batch_execute("DROP TABLE other_data").unwrap();
    let freed = Instant::now();
    let back = loop {
        let (status, _, _, _) = post(&client, &app.address, 1000 + refused).await;
        if status == StatusCode::ACCEPTED {
            acked.insert(1000 + refused);
            break freed.elapsed();
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(freed.elapsed() < Duration::from_secs(10), "still refused after space was freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("SQLite disk full: accepting events again {back:?} after space was freed");
    all_delivered(&sink, &acked, Duration::from_secs(30)).await;
    let in_flight: i64 = diesel::sql_query("SELECT COUNT(*) AS n FROM deliveries WHERE state <> 'succeeded'")
        .get_result::<Count>(&mut other)
        .unwrap()
        .n;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut left = in_flight;
    while left > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = diesel::sql_query("SELECT COUNT(*) AS n FROM deliveries WHERE state <> 'succeeded'")
            .get_result::<Count>(&mut other)
            .unwrap()
            .n;
    }
    assert_eq!(left, 0, "every delivery ended (handler {})", handler["id"]);
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

//! The claim on PostgreSQL when the planner's statistics are stale.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    dispatch::{envelope, http_handler},
    helpers::{Backend, TestApp, TestDb},
    sink::{Behavior, Sink},
};

const WAIT: Duration = Duration::from_secs(10);

/// PostgreSQL plans the claim from its statistics. Taken at an idle moment
/// (autovacuum does, after a burst), they say the indexes of unfinished
/// deliveries are empty, and stay so however many rows arrive. With the
/// per-object index by handler this made each candidate's probe a scan of the
/// whole backlog (seconds per claim at 10,000 pending, so the dispatcher
/// refreshes the statistics after a slow claim that found work; its decision
/// has a unit test in `dispatcher::worker`). Since the probe is by ordering
/// group, entity, object and event, the burst below claims in a few
/// milliseconds with such statistics, and no refresh is needed: what this
/// test holds is that it is delivered, in order, after each idle `ANALYZE`.
#[tokio::test]
async fn a_burst_after_idle_statistics_is_delivered_in_order() {
    const BURST: usize = 600;
    let Some(db) = TestDb::new(Backend::Postgres) else { return };
    let url = db.url.clone();
    let app = TestApp::with_retries(db, "2s").await;
    let sink = Sink::start().await;
    app.create_handler(http_handler("x", "clients.update", &sink.url("/x"), 1)).await;
    let (status, _) = app.post_event(&envelope("clients.update", json!("warm-up"), json!({"n": 0}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    sink.wait_for("/x", 1, WAIT).await;
    let mut delivered = 1;
    for burst in 0..2 {
        // Idle: nothing pending when the statistics are taken.
        analyze_when_idle(&url).await;
        // The head fails once and waits 2 s for its retry; the burst, all of
        // one object, waits behind it (per-object order), then goes one by one.
        sink.behave(
            "/x",
            Behavior { statuses: [500].into(), only_if_body_contains: Some("\"head\"".into()), ..Behavior::default() },
        );
        let (status, _) = app
            .post_event(&envelope("clients.update", json!("x"), json!({"head": true, "burst": burst, "n": 0})))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        for n in 1..=BURST {
            let (status, _) =
                app.post_event(&envelope("clients.update", json!("x"), json!({"burst": burst, "n": n}))).await;
            assert_eq!(status, StatusCode::ACCEPTED);
        }
        let expected = delivered + 2 + BURST; // the head twice (500, then 200)
        let received = sink.wait_for("/x", expected, Duration::from_secs(60)).await;
        let order: Vec<u64> = received[delivered..]
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.json()["data"]["n"].as_u64().unwrap())
            .collect();
        assert_eq!(order, (0..=BURST as u64).collect::<Vec<_>>(), "burst {burst} in order");
        delivered = expected;
    }
}

/// `ANALYZE deliveries` once no delivery is pending, as autovacuum would.
async fn analyze_when_idle(url: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    while pg_count(url, "SELECT count(*) AS n FROM deliveries WHERE state IN ('pending', 'in_flight')").await > 0 {
        assert!(std::time::Instant::now() < deadline, "deliveries still pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pg_count(url, "ANALYZE deliveries").await;
}

/// Runs `sql` on its own connection; its `n` (0 for a statement without rows).
async fn pg_count(url: &str, sql: &'static str) -> i64 {
    use diesel::{Connection, PgConnection, RunQueryDsl, sql_types::BigInt};
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        if sql.starts_with("SELECT") {
            diesel::sql_query(sql).get_result::<Count>(&mut conn).unwrap().n
        } else {
            diesel::sql_query(sql).execute(&mut conn).unwrap();
            0
        }
    })
    .await
    .unwrap()
}

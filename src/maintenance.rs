//! Background upkeep: retention of execution logs, finished deliveries and
//! their events; expired sessions and idempotency keys.
//!
//! Deletes go in small batches with a pause between, so writers (ingestion,
//! the dispatcher's recorder) get the database in between.

use std::time::Duration;

use chrono::TimeDelta;

use crate::{
    db::{Db, QueryResult, Write, deliveries::Delivery, events::Event, logs::ExecutionLog, now, sessions::Session},
    diagnostics::cause_chain,
};

/// Rows removed per statement.
const BATCH: i64 = 1000;
/// The pause between two batches.
const PAUSE: Duration = Duration::from_millis(20);

/// One kind of row to prune: removes a batch older than the time given.
type PruneStep = fn(&mut Write<'_>, chrono::NaiveDateTime) -> QueryResult<usize>;

/// Runs the upkeep every so often, for ever.
pub async fn run(db: Db, retention: Duration) {
    let every = (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        prune(&db, retention).await;
        for (what, result) in [
            ("expired sessions", db.write(Session::delete_expired).await),
            ("old idempotency keys", db.write(Event::prune_idempotency_keys).await),
            ("old hourly counts", db.write(crate::db::logs::prune_stats).await),
        ] {
            if let Err(e) = result {
                tracing::warn!(error = %cause_chain(&e), "cannot remove {what}");
            }
        }
    }
}

/// Removes what is older than the retention: attempts, finished deliveries,
/// and events left with no delivery. Unfinished deliveries and their events stay.
pub async fn prune(db: &Db, retention: Duration) {
    let before = now() - TimeDelta::from_std(retention).unwrap_or(TimeDelta::days(30));
    let steps: [(&str, PruneStep); 3] = [
        ("execution logs", |c, t| ExecutionLog::prune(c, t, BATCH)),
        ("finished deliveries", |c, t| Delivery::prune_finished(c, t, BATCH)),
        ("events", |c, t| Event::prune_undelivered(c, t, BATCH)),
    ];
    for (what, step) in steps {
        let mut removed = 0;
        loop {
            match db.write(move |conn| step(conn, before)).await {
                Ok(0) => break,
                Ok(n) => {
                    removed += n;
                    tokio::time::sleep(PAUSE).await;
                }
                Err(e) => {
                    tracing::warn!(error = %cause_chain(&e), "cannot prune {what}");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::info!(removed, "pruned {what} older than the retention");
        }
    }
}

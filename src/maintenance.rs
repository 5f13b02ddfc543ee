//! Background upkeep: retention of execution logs, finished deliveries and
//! their events, and of the audit log (its own, longer); expired sessions,
//! old sign-in failures and idempotency keys.
//!
//! Deletes go in small batches with a pause between, so writers (ingestion,
//! the dispatcher's recorder) get the database in between.

use std::time::Duration;

use chrono::TimeDelta;

use crate::{
    config::Settings,
    db::{
        Db, QueryResult, Write, audit::AuditEntry, deliveries::Delivery, events::Event, handlers::Handler,
        jobs::BulkJob, logs::ExecutionLog, now, sessions::Session, signins,
    },
    diagnostics::cause_chain,
};

/// Rows removed per statement.
const BATCH: i64 = 1000;
/// The pause between two batches.
const PAUSE: Duration = Duration::from_millis(20);

/// One kind of row to prune: removes a batch older than the time given.
type PruneStep = fn(&mut Write<'_>, chrono::NaiveDateTime) -> QueryResult<usize>;

/// Runs the upkeep every so often, for ever.
pub async fn run(db: Db, settings: Settings) {
    let retention = settings.log_retention;
    let every = (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(600));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let delta = |d: Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::days(365));
    let (max_age, lockout) = (delta(settings.session_max_age), delta(settings.login_lockout));
    let watch = crate::dispatcher::DispatchSettings::from(&settings).watch;
    loop {
        tick.tick().await;
        // Failing for too long, with no attempt since to disable them (DESIGN §8.6).
        match db.write(move |c| crate::db::health::disable_overdue(c, &watch)).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(handlers = n, "disabled handlers whose every attempt has failed for too long"),
            Err(e) => tracing::warn!(error = %cause_chain(&e), "cannot disable the handlers failing for too long"),
        }
        prune(&db, retention).await;
        prune_audit(&db, settings.audit_retention).await;
        for (what, result) in [
            ("expired sessions", db.write(move |c| Session::delete_expired(c, max_age)).await),
            ("old sign-in failures", db.write(move |c| signins::prune(c, now() - lockout)).await),
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
/// events left with no delivery, the names of handlers deleted before it and
/// bulk jobs finished before it. Unfinished deliveries and their events stay.
pub async fn prune(db: &Db, retention: Duration) {
    let before = now() - TimeDelta::from_std(retention).unwrap_or(TimeDelta::days(30));
    let steps: [(&str, PruneStep); 6] = [
        ("execution logs", |c, t| ExecutionLog::prune(c, t, BATCH)),
        ("finished deliveries", |c, t| Delivery::prune_finished(c, t, BATCH)),
        ("events", |c, t| Event::prune_undelivered(c, t, BATCH)),
        // A deleted handler's name is kept for its logs, all older than its deletion.
        ("deleted handlers' names", |c, t| Handler::prune_deleted(c, t)),
        ("finished bulk jobs", |c, t| BulkJob::prune_finished(c, t)),
        ("alerts", |c, t| crate::db::alerts::Alert::prune(c, t)),
    ];
    prune_steps(db, before, &steps).await;
}

/// Removes the audit log's entries older than its retention.
pub async fn prune_audit(db: &Db, retention: Duration) {
    let before = now() - TimeDelta::from_std(retention).unwrap_or(TimeDelta::days(365));
    prune_steps(db, before, &[("audit log entries", |c, t| AuditEntry::prune(c, t, BATCH))]).await;
}

async fn prune_steps(db: &Db, before: chrono::NaiveDateTime, steps: &[(&str, PruneStep)]) {
    for &(what, step) in steps {
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

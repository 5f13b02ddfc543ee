//! The claim loop: claim what is due, start its attempts, sleep until woken.

use std::{sync::Arc, time::Duration};

use chrono::TimeDelta;
use tokio::{sync::mpsc, task::JoinSet, time::Instant};

use super::{
    Shared,
    attempt::{Attempt, Call},
    outcome::AttemptResult,
    recorder::{self, Done},
};
use crate::{
    db::{
        Backend,
        claims::{ClaimLimits, Claimed},
        deliveries::Delivery,
        now,
    },
    diagnostics::cause_chain,
};

/// The most deliveries claimed in one query.
const CLAIM_BATCH: usize = 256;

pub(crate) async fn run(shared: Arc<Shared>) {
    resume_cut_off(&shared).await;
    unpark_stragglers(&shared).await;
    let (tx, rx) = mpsc::unbounded_channel();
    let recorder = tokio::spawn(recorder::run(shared.clone(), rx));
    let mut attempts = JoinSet::new();
    let mut stop = shared.stop.subscribe();
    let mut renew_at = Instant::now() + shared.settings.lease / 3;

    // Woken (by ingestion, a recorded attempt, a start): something is likely
    // due, so claim at once; after a timed sleep, look first (one index probe).
    let mut woken = true;
    while !*stop.borrow() {
        let look = Look::start(&shared);
        let (claimed, looked) = look_and_claim(&shared, woken).await;
        let full = claimed.len() >= CLAIM_BATCH.min(shared.settings.handler_concurrency.max(16));
        let claimed_any = !claimed.is_empty();
        for delivery in claimed {
            let (shared, tx) = (shared.clone(), tx.clone());
            attempts.spawn(async move { attempt(&shared, delivery, tx).await });
        }
        while attempts.try_join_next().is_some() {}
        renew_if_due(&shared, &mut renew_at).await;
        if full {
            shared.wakeup.left_work();
            woken = true;
            continue;
        }
        // How long to sleep: looked up after the claim, off the path from a
        // new event to its delivery.
        let next_due = match looked {
            Some(due) if !claimed_any => due,
            _ => next_due(&shared).await,
        };
        let Some(next_look) = look.ended(&shared, next_due) else {
            woken = true;
            continue;
        };
        woken = tokio::select! {
            biased;
            _ = shared.wakeup.woken() => true,
            _ = tokio::time::sleep_until(next_look.min(renew_at)) => false,
            _ = stop.changed() => false,
        };
    }
    drain(&shared, attempts, renew_at).await;
    drop(tx);
    let _ = recorder.await;
    hand_back(&shared).await;
    tracing::info!("dispatcher stopped");
}

/// Woken, claims at once; else claims only if the next due delivery is due
/// (and says when that is, so the loop need not look again).
async fn look_and_claim(shared: &Arc<Shared>, woken: bool) -> (Vec<Claimed>, Option<Option<chrono::NaiveDateTime>>) {
    if woken {
        return (claim(shared).await, None);
    }
    let due = next_due(shared).await;
    let claimed = if due.is_some_and(|t| t <= now()) { claim(shared).await } else { Vec::new() };
    (claimed, Some(due))
}

/// Every third of a lease: the running attempts' leases renewed, and on
/// PostgreSQL the parked deliveries another process may have left due.
async fn renew_if_due(shared: &Arc<Shared>, renew_at: &mut Instant) {
    if Instant::now() < *renew_at {
        return;
    }
    renew(shared).await;
    if shared.db.backend() == Backend::Postgres && unpark_stragglers(shared).await {
        shared.wakeup.wake();
    }
    *renew_at = Instant::now() + shared.settings.lease / 3;
}

/// At a start, the attempts a dead process left in flight are due again at
/// once, not when their leases run out. SQLite: one process per file, so
/// whatever was in flight died with the last one. PostgreSQL: those whose
/// process has no connection open to the database any more.
async fn resume_cut_off(shared: &Arc<Shared>) {
    let resumed = match shared.db.backend() {
        Backend::Sqlite => shared.db.write(Delivery::release_all).await,
        Backend::Postgres => shared.db.write(Delivery::release_dead).await,
    };
    match resumed {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "resuming attempts cut off by the end of a process"),
        Err(e) => tracing::error!(error = %cause_chain(&e), "cannot resume attempts in flight"),
    }
}

/// Makes due the parked deliveries whose turn in their event's chain has
/// come but were not made due with it (see [`Delivery::unpark_all`]): at a
/// start, and on PostgreSQL with each lease renewal. Whether there were any.
async fn unpark_stragglers(shared: &Arc<Shared>) -> bool {
    match shared.db.write(Delivery::unpark_all).await {
        Ok(0) => false,
        Ok(n) => {
            tracing::info!(deliveries = n, "made due deliveries whose turn in their event's chain had come");
            true
        }
        Err(e) => {
            tracing::warn!(error = %cause_chain(&e), "cannot look for deliveries whose turn has come");
            false
        }
    }
}

/// What was cut off at the stop's deadline goes back, due at once, for the
/// next start or another process.
async fn hand_back(shared: &Arc<Shared>) {
    let owner = shared.owner.clone();
    match shared.db.write(move |conn| Delivery::release_owned(conn, &owner)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "handed back unfinished deliveries"),
        Err(e) => tracing::warn!(error = %cause_chain(&e), "cannot hand deliveries back; their leases will expire"),
    }
}

/// One look at due work, from its start: what the loop needs afterwards to
/// tell whether something changed while it looked.
struct Look {
    wakeup: super::wakeup::Look,
    started: chrono::NaiveDateTime,
}

impl Look {
    fn start(shared: &Shared) -> Self {
        Self { wakeup: shared.wakeup.look_started(), started: now() }
    }

    /// After the look, which left `next_due` as the next due time: says
    /// whether due work was left unclaimed (for the recorder, which wakes
    /// the loop only then or for a retry), and when to look again: `None`
    /// at once, else at the latest at the instant returned.
    fn ended(&self, shared: &Shared, next_due: Option<chrono::NaiveDateTime>) -> Option<Instant> {
        // Due now and not claimed: waiting on room or on its turn, which a
        // recorded attempt gives. One recorded while this look ran may have
        // found `behind` still false and not woken the loop: look again.
        let at = now();
        let behind = next_due.is_some_and(|due| due <= at);
        if shared.wakeup.look_ended(&self.wakeup, behind) {
            return None;
        }
        // A delivery that fell due while this look ran (a retry's delay
        // ended) was not looked at: look again now, a pending wake first.
        // (A new event's also, but ingestion has woken the loop for it.)
        let fell_due = next_due.is_some_and(|due| due > self.started && due <= at);
        Some(if fell_due { Instant::now() } else { wake_at(next_due, shared.settings.poll_interval) })
    }
}

/// When an idle dispatcher looks again: when the next delivery is due, at the
/// latest after `poll`. With attempts under way their recording wakes it
/// sooner; a delivery due now but not claimable (waiting on its turn) waits
/// for a finished attempt or a new event to wake it.
fn wake_at(next_due: Option<chrono::NaiveDateTime>, poll: Duration) -> Instant {
    let poll = Instant::now() + poll;
    match next_due.map(|due| (due - now()).to_std()) {
        // Far ahead (a parked delivery): the poll comes first.
        Some(Ok(wait)) if !wait.is_zero() => Instant::now().checked_add(wait).map_or(poll, |due| due.min(poll)),
        _ => poll,
    }
}

/// When the next unfinished delivery is due; on a read error, now (the claim
/// that follows reports the error if it persists).
async fn next_due(shared: &Arc<Shared>) -> Option<chrono::NaiveDateTime> {
    match shared.db.read(Delivery::next_due).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %cause_chain(&e), "cannot read the next due delivery");
            Some(now())
        }
    }
}

/// Claims what this process has room for.
async fn claim(shared: &Arc<Shared>) -> Vec<Claimed> {
    let cap = shared.settings.handler_concurrency;
    let (room, busy) = {
        let in_flight = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let busy: serde_json::Map<String, serde_json::Value> =
            in_flight.by_handler.iter().map(|(h, n)| (h.to_string(), serde_json::Value::from(*n))).collect();
        (shared.settings.max_in_flight.saturating_sub(in_flight.total), serde_json::Value::Object(busy).to_string())
    };
    if room == 0 {
        return Vec::new();
    }
    // One claim takes at most one handler's worth: the query looks at up to
    // that many candidates of each handler with room, so a small limit keeps
    // it cheap when many have a backlog; more claims follow as room frees up.
    let limit = room.min(CLAIM_BATCH).min(cap.max(16));
    let limits = ClaimLimits { limit: limit as i64, per_handler: cap as i64, busy };
    let owner = shared.owner.clone();
    let lease_until = now() + TimeDelta::from_std(shared.settings.lease).unwrap_or(TimeDelta::seconds(30));
    let started = Instant::now();
    let result = shared
        .db
        .bookkeep_one(move |conn| {
            let running = std::time::Instant::now();
            Delivery::claim(conn, &owner, lease_until, &limits).map(|claimed| (claimed, running.elapsed()))
        })
        .await;
    refresh_statistics_if_slow(shared, started.elapsed(), result.as_ref().map_or(0, |(c, _)| c.len()));
    let claimed = match result {
        Ok((claimed, took)) => {
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            shared.metrics.claim_micros.fetch_add(micros, std::sync::atomic::Ordering::Relaxed);
            shared.metrics.claims.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            shared.metrics.claimed.fetch_add(claimed.len() as u64, std::sync::atomic::Ordering::Relaxed);
            claimed
        }
        Err(e) => {
            tracing::error!(error = %cause_chain(&e), "cannot claim deliveries");
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Vec::new();
        }
    };
    keep_what_fits(shared, claimed).await
}

/// A handler may have come back with more than its remaining room: keeps
/// what fits (counted in flight), hands the rest back at once.
async fn keep_what_fits(shared: &Arc<Shared>, claimed: Vec<Claimed>) -> Vec<Claimed> {
    let cap = shared.settings.handler_concurrency;
    let mut keep = Vec::with_capacity(claimed.len());
    let mut give_back = Vec::new();
    {
        let mut in_flight = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for delivery in claimed {
            if in_flight.by_handler.get(&delivery.handler_id).copied().unwrap_or(0) < cap {
                in_flight.add(delivery.handler_id, delivery.id);
                keep.push(delivery);
            } else {
                give_back.push(delivery.id);
            }
        }
    }
    if !give_back.is_empty() {
        let owner = shared.owner.clone();
        if let Err(e) = shared.db.bookkeep_one(move |conn| Delivery::release(conn, &owner, &give_back)).await {
            tracing::warn!(error = %cause_chain(&e), "cannot hand deliveries back; their leases will expire");
        }
    }
    keep
}

/// A claim is a few index probes per candidate; when one that found work
/// takes long on PostgreSQL, the planner is working from stale statistics.
/// Typically they were taken while nothing was pending (at an idle moment, by
/// autovacuum or by an earlier refresh): the partial indexes of unfinished
/// deliveries then look empty for good — PostgreSQL scales an index's size by
/// the density it last saw — and every candidate's probe becomes a scan of the
/// whole backlog, seconds per claim, until the next `ANALYZE`. Refresh them at
/// once, in the background (the claims go on meanwhile), at most every few
/// seconds. A slow claim that found nothing says nothing of the plan: an idle
/// table's statistics would be the empty ones again.
fn refresh_statistics_if_slow(shared: &Arc<Shared>, took: Duration, claimed: usize) {
    if shared.db.backend() != Backend::Postgres {
        return;
    }
    {
        let mut last = shared.last_analyze.lock().unwrap_or_else(|e| e.into_inner());
        if !should_refresh(took, claimed, *last) {
            return;
        }
        *last = Some(std::time::Instant::now());
    }
    tracing::info!(
        claim_ms = took.as_millis() as u64,
        claimed,
        "a slow claim: refreshing the planner's statistics of deliveries"
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        let result = shared.db.write(crate::db::deliveries::Delivery::refresh_statistics).await;
        if let Err(e) = result {
            tracing::warn!(error = %cause_chain(&e), "cannot analyze deliveries");
        }
    });
}

/// Whether a claim that took `took` and claimed `claimed` rows calls for
/// fresh statistics, the last refresh having been at `last`.
fn should_refresh(took: Duration, claimed: usize, last: Option<std::time::Instant>) -> bool {
    const SLOW: Duration = Duration::from_millis(25);
    const AT_MOST_EVERY: Duration = Duration::from_secs(5);
    took >= SLOW && claimed > 0 && last.is_none_or(|t| t.elapsed() >= AT_MOST_EVERY)
}

/// One attempt, then off to the recorder.
async fn attempt(shared: &Arc<Shared>, delivery: Claimed, tx: mpsc::UnboundedSender<Done>) {
    let Attempt { call, number: attempt, timeout } = Attempt::of(&delivery);
    // A rate-limited handler's attempt waits for its start time.
    if let Some(wait) = delivery.not_before.and_then(|at| (at - now()).to_std().ok()) {
        tokio::time::sleep(wait).await;
    }
    let started_at = now();
    let result = match call {
        Call::Script => super::script::run(&shared.settings.scripts_dir, &delivery, attempt, timeout).await,
        Call::Http => super::http::call(&shared.http, &shared.settings.deny_targets, &delivery, timeout).await,
        Call::Cancel(reason) => AttemptResult::cancelled(&reason),
    };
    tracing::debug!(delivery = delivery.id, attempt, outcome = result.outcome.as_str(), "attempt ended");
    shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).ended(delivery.handler_id, delivery.id);
    let _ = tx.send(Done { delivery, attempt, started_at, result });
}

/// Keeps the leases of this process's running attempts alive (not those of
/// attempts that ended and wait to be recorded: see `InFlight`).
async fn renew(shared: &Arc<Shared>) {
    let running = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner()).running();
    if running.is_empty() {
        return;
    }
    let owner = shared.owner.clone();
    let until = now() + TimeDelta::from_std(shared.settings.lease).unwrap_or(TimeDelta::seconds(30));
    if let Err(e) = shared.db.bookkeep_one(move |conn| Delivery::renew_leases(conn, &owner, &running, until)).await {
        tracing::warn!(error = %cause_chain(&e), "cannot renew leases");
    }
}

/// At a stop: attempts in flight get the grace period to finish (their
/// results are recorded); what is still running then is handed back.
async fn drain(shared: &Arc<Shared>, mut attempts: JoinSet<()>, mut renew_at: Instant) {
    let deadline = Instant::now() + shared.settings.shutdown_grace;
    if !attempts.is_empty() {
        tracing::info!(attempts = attempts.len(), "waiting for attempts in flight");
    }
    while !attempts.is_empty() {
        tokio::select! {
            _ = attempts.join_next() => {}
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep_until(renew_at) => {
                renew(shared).await;
                renew_at = Instant::now() + shared.settings.lease / 3;
            }
        }
    }
    if !attempts.is_empty() {
        tracing::warn!(attempts = attempts.len(), "stopping attempts still running after the grace period");
        attempts.abort_all();
        while attempts.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::should_refresh;

    #[test]
    fn statistics_are_refreshed_after_a_slow_claim_that_found_work_at_most_every_few_seconds() {
        let slow = Duration::from_millis(400);
        assert!(should_refresh(slow, 128, None));
        assert!(!should_refresh(Duration::from_millis(3), 128, None), "a fast claim");
        assert!(!should_refresh(slow, 0, None), "a slow claim of an idle table: its statistics would be empty ones");
        assert!(!should_refresh(slow, 128, Some(Instant::now())), "refreshed a moment ago");
        assert!(should_refresh(slow, 128, Instant::now().checked_sub(Duration::from_secs(6))));
    }
}

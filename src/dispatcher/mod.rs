//! The dispatcher: delivers every event to its handlers (DESIGN §4).
//!
//! In-process and tokio-based: [`worker`] claims due deliveries (woken at once
//! by ingestion, with a periodic sweep as fallback) and runs each attempt as a
//! task ([`http`] or [`script`]); [`recorder`] writes finished attempts in
//! batches — one transaction for many log rows — and wakes the worker, since a
//! finished attempt may unblock the next handler of a chain or the next event
//! of an object. Claims are leases renewed while attempts run, so a process
//! that dies leaves nothing stuck.

mod attempt;
pub mod http;
mod metrics;
pub mod outcome;
pub mod recorder;
pub mod script;
mod wakeup;
pub mod worker;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

use crate::db::{alerts::Raising, claims::Claimed, health::Watch};
use crate::domain::{HandlerType, RetrySchedule, target::DenyList};
use crate::{config::Settings, db::Db};
pub use metrics::{DatabaseFigures, Metrics};

/// The dispatcher's settings, taken from [`Settings`].
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub scripts_dir: PathBuf,
    pub retry_schedule: RetrySchedule,
    pub max_in_flight: usize,
    pub handler_concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub shutdown_grace: Duration,
    pub deny_targets: DenyList,
    /// The cap on an answer's `Retry-After` (DESIGN §8.2).
    pub retry_after_max: Duration,
    /// What the recorder raises alerts on (DESIGN §8.6).
    pub watch: Watch,
}

impl From<&Settings> for DispatchSettings {
    fn from(s: &Settings) -> Self {
        Self {
            scripts_dir: s.scripts_dir.clone(),
            retry_schedule: s.retry_schedule.clone(),
            max_in_flight: s.max_in_flight,
            handler_concurrency: s.handler_concurrency,
            lease: s.lease,
            poll_interval: s.poll_interval,
            shutdown_grace: s.shutdown_grace,
            deny_targets: s.deny_targets.clone(),
            retry_after_max: s.retry_after_max,
            watch: Watch {
                raising: Raising { send: s.alert_url.is_some(), window: s.alert_window },
                failing_after: i32::try_from(s.alert_failing_after).unwrap_or(i32::MAX),
                auto_disable_after: Some(s.auto_disable_after).filter(|d| !d.is_zero()),
            },
        }
    }
}

/// This process's attempts: `total`, claimed and not yet recorded (at most
/// `max_in_flight`: the recorder's backlog holds claims back); `by_handler`,
/// those still running, each handler's at most its concurrency. An attempt
/// counts against its handler only while it runs: once the endpoint has
/// answered (or the script exited), the handler has room for the next even
/// though the answer is not written yet.
///
/// `running` are the deliveries whose attempts run: only their leases are
/// renewed. One whose result waits to be written (the database is away) is
/// not: should the wait outlast its lease, the delivery is attempted again —
/// never held for as long as the writing fails.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    total: usize,
    by_handler: HashMap<i64, usize>,
    running: HashSet<i64>,
}

impl InFlight {
    fn add(&mut self, handler_id: i64, delivery_id: i64) {
        self.total += 1;
        *self.by_handler.entry(handler_id).or_default() += 1;
        self.running.insert(delivery_id);
    }

    /// The deliveries whose attempts run now.
    fn running(&self) -> Vec<i64> {
        self.running.iter().copied().collect()
    }

    /// The attempt ended; it waits to be recorded.
    fn ended(&mut self, handler_id: i64, delivery_id: i64) {
        self.running.remove(&delivery_id);
        if let Some(n) = self.by_handler.get_mut(&handler_id) {
            *n -= 1;
            if *n == 0 {
                self.by_handler.remove(&handler_id);
            }
        }
    }

    /// `n` attempts are recorded.
    fn recorded(&mut self, n: usize) {
        self.total = self.total.saturating_sub(n);
    }
}

pub(crate) struct Shared {
    db: Db,
    settings: DispatchSettings,
    /// This process's name on its leases.
    owner: String,
    http: reqwest::Client,
    wakeup: wakeup::Wakeup,
    stop: watch::Sender<bool>,
    in_flight: Mutex<InFlight>,
    metrics: Arc<Metrics>,
    /// When the planner's statistics were last refreshed (PostgreSQL).
    last_analyze: Mutex<Option<std::time::Instant>>,
}

/// A handle on the dispatcher; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    shared: Arc<Shared>,
}

impl Dispatcher {
    pub fn new(db: Db, settings: DispatchSettings) -> Result<Self, reqwest::Error> {
        let owner = db.instance().to_owned();
        let (stop, _) = watch::channel(false);
        let http = http::client(&settings.deny_targets)?;
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                settings,
                owner,
                http,
                wakeup: wakeup::Wakeup::new(),
                stop,
                in_flight: Mutex::new(InFlight::default()),
                metrics: Arc::new(Metrics::default()),
                last_analyze: Mutex::new(None),
            }),
        })
    }

    /// Something may be due now (an event was ingested, a delivery retried).
    pub fn wake(&self) {
        self.shared.wakeup.wake();
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Runs until [`Dispatcher::stop`]; then lets attempts in flight finish
    /// within the grace period and hands the rest back.
    pub async fn run(&self) {
        worker::run(self.shared.clone()).await;
    }

    /// Sends `delivery` now, whatever its handler's status, outside the
    /// claims, the ordering rules and the concurrency limits (a test event,
    /// DESIGN §8.5); nothing is recorded here.
    pub async fn attempt_now(&self, delivery: &Claimed) -> outcome::AttemptResult {
        let timeout = attempt::Attempt::of(delivery).timeout;
        let shared = &self.shared;
        match delivery.handler_type {
            HandlerType::Http => http::call(&shared.http, &shared.settings.deny_targets, delivery, timeout).await,
            HandlerType::Script => script::run(&shared.settings.scripts_dir, delivery, 1, timeout).await,
        }
    }

    /// Stops claiming; `run` returns once the attempts in flight are settled.
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
        self.shared.wakeup.wake();
    }
}

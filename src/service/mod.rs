//! The use cases: every change a user can make — to handlers, to deliveries,
//! to accounts and tokens — and the ingestion of events. Each one checks the
//! actor's right ([`access`]), validates, writes with its audit entry
//! ([`audit`]), wakes the dispatcher and counts, here and once, and answers a
//! typed [`Refusal`] that the HTML pages ([`crate::web`]) and the JSON API
//! ([`crate::api`]) each turn into their own answer. Reads go to
//! [`crate::db`] directly, behind [`Action::Read`].
//!
//! The module graph: `app` → `web`/`api` → `service` → `db`/`dispatcher`/`domain`.

pub mod access;
pub mod accounts;
mod alerts;
mod audit;
mod deliveries;
mod events;
pub mod filters;
mod handlers;
pub(crate) mod ingest;
mod jobs;
mod test_events;
pub mod tokens;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

pub use access::{Action, Actor, Role, Scope};
pub use events::IngestRequest;
pub use jobs::BulkStart;
pub use test_events::sample_envelope;

use self::{ingest::Ingestor, tokens::TokenCache};
use crate::{
    config::Settings,
    db::{Db, DbError},
    dispatcher::Dispatcher,
    domain::{FieldErrors, envelope::EnvelopeError},
};

/// What every request reaches: the database for reads, the settings, and the
/// use cases (methods of this type, in this module's files).
pub struct AppState {
    pub db: Db,
    pub settings: Settings,
    /// SHA-256 of the API bearer token.
    pub api_token_hash: String,
    dispatcher: Dispatcher,
    ingestor: Ingestor,
    tokens: TokenCache,
    /// Set at a stop: no event is acknowledged after it.
    stopping: Arc<AtomicBool>,
    /// Wakes the bulk jobs' runner when a job is started.
    jobs: tokio::sync::Notify,
}

/// Why a change was not made.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The input breaks a rule; messages by field.
    #[error("the input is not valid")]
    Invalid(FieldErrors),
    /// The actor may not do this (403); says who may not do what.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The change contradicts the state (409): the last admin, a revoked token…
    #[error("{0}")]
    Conflict(String),
    /// The posted event is not an envelope of the catalogue.
    #[error(transparent)]
    Envelope(EnvelopeError),
    #[error("there is no {0}")]
    NotFound(Missing),
    /// The same bulk retry or replay (kind, filter, handler) is running
    /// already, as job `.0` (a confirmation sent twice starts one job).
    #[error("the same bulk action is running already as job {0}")]
    AlreadyRunning(i64),
    /// Only a finished delivery can be retried by hand.
    #[error("delivery {0} is still pending or in flight: it can be retried once it has finished")]
    NotFinished(i64),
    /// The `Idempotency-Key` was used for another body (that of event `.0`).
    #[error(
        "this Idempotency-Key was used for another body (event {0}) in the last 24 hours; a new event needs a new key"
    )]
    KeyReused(i64),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The database failed (unavailable, or a fault to log).
    #[error(transparent)]
    Db(#[from] DbError),
    /// A fault to log (a task that could not run).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a [`Refusal::NotFound`] did not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Handler(i64),
    Delivery(i64),
    User(i64),
    Token(i64),
    Job(i64),
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Missing::Handler(id) => write!(f, "handler {id}"),
            Missing::Delivery(id) => write!(f, "delivery {id}"),
            Missing::User(id) => write!(f, "user {id}"),
            Missing::Token(id) => write!(f, "API token {id}"),
            Missing::Job(id) => write!(f, "job {id}"),
        }
    }
}

impl Refusal {
    /// `NotFound(missing)` for a database "no such row", else the database error.
    fn or_missing(missing: Missing) -> impl Fn(DbError) -> Refusal {
        move |e| if e.is_not_found() { Refusal::NotFound(missing) } else { Refusal::Db(e) }
    }
}

impl AppState {
    /// The state of a server; starts its ingestion writer on the current
    /// tokio runtime.
    pub fn new(db: Db, settings: Settings, api_token_hash: String, dispatcher: Dispatcher) -> Self {
        let max_attempts = i32::try_from(settings.retry_schedule.max_attempts()).unwrap_or(i32::MAX);
        let ingestor = Ingestor::start(db.clone(), dispatcher.clone(), max_attempts);
        Self {
            db,
            settings,
            api_token_hash,
            dispatcher,
            ingestor,
            tokens: TokenCache::default(),
            stopping: Arc::new(AtomicBool::new(false)),
            jobs: tokio::sync::Notify::new(),
        }
    }

    /// The dispatcher, for the process's lifecycle and its metrics.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The flag a stop sets; once set no event is acknowledged.
    pub fn stopping_flag(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }

    /// Whether the server is stopping (ingestion answers 503 then).
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

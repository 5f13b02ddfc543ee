//! Settings: every flag and `PROVISIOND_*` variable in one place.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Parser;

use crate::domain::{RetrySchedule, duration::parse_duration, target::DenyList};

/// provisiond — the Provisioning API server: billing events delivered durably,
/// in order, to HTTP and script handlers.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Settings {
    /// Database: `sqlite://path` (a file, created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "PROVISIOND_DATABASE_URL", default_value = "sqlite://provisiond.db")]
    pub database_url: String,

    /// Address the web UI and API listen on.
    #[arg(long, env = "PROVISIOND_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory script handlers live in; relative targets resolve here.
    #[arg(long, env = "PROVISIOND_SCRIPTS_DIR", default_value = "./scripts")]
    pub scripts_dir: PathBuf,

    /// Address ranges (comma-separated CIDRs) no HTTP attempt may connect to,
    /// however the target writes them; a name resolving into one fails its attempt.
    #[arg(
        long,
        env = "PROVISIOND_DENY_TARGETS",
        default_value = "169.254.0.0/16,fe80::/10,0.0.0.0/8",
        value_parser = DenyList::parse
    )]
    pub deny_targets: DenyList,

    /// After a secret is rotated, how long the old one goes on signing beside
    /// the new (both in `webhook-signature`), so endpoints can switch; `0s`: at once.
    #[arg(long, env = "PROVISIOND_SECRET_OVERLAP", default_value = "24h", value_parser = parse_duration)]
    pub secret_overlap: Duration,

    /// The longest wait an answer's `Retry-After` (on 429, 502, 503, 504) may
    /// impose on its handler: every attempt of it is held back until then.
    #[arg(long, env = "PROVISIOND_RETRY_AFTER_MAX", default_value = "1h", value_parser = parse_duration)]
    pub retry_after_max: Duration,

    /// Delays between attempts of a failed delivery, e.g. `5s,30s,2m`; k delays give at most 1 + k attempts.
    #[arg(
        long,
        env = "PROVISIOND_RETRY_SCHEDULE",
        default_value = "5s,30s,2m,10m,30m,1h,3h,6h",
        value_parser = RetrySchedule::parse
    )]
    pub retry_schedule: RetrySchedule,

    /// User name of the administrator created at first start.
    #[arg(long, env = "PROVISIOND_ADMIN_USER", default_value = "admin")]
    pub admin_user: String,

    /// The administrator's password; when unset, one is generated and printed once at first start.
    /// When set, it replaces the stored password at start.
    #[arg(long, env = "PROVISIOND_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// The bootstrap `admin` bearer token for /api/v1 (at least 24 characters);
    /// when unset, one is generated and printed once at first start. Named,
    /// scoped tokens are made in Settings → API tokens.
    #[arg(long, env = "PROVISIOND_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Serve /metrics without a token (else it needs a `read` or `admin` bearer token).
    #[arg(long, env = "PROVISIOND_METRICS_PUBLIC", default_value_t = false)]
    pub metrics_public: bool,

    /// Largest accepted request body for the API, in bytes.
    #[arg(long, env = "PROVISIOND_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// The most delivery attempts running at once in this process, counting
    /// those whose result is not yet written.
    #[arg(long, env = "PROVISIOND_MAX_IN_FLIGHT", default_value_t = 512, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub max_in_flight: usize,

    /// The most attempts running at once for one handler (other objects of the
    /// same handler run in parallel up to this); an attempt stops counting
    /// when the endpoint answers or the script exits.
    #[arg(long, env = "PROVISIOND_HANDLER_CONCURRENCY", default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub handler_concurrency: usize,

    /// How long a claim on a delivery lasts without renewal; after a crash,
    /// another process (or the next start) attempts it again after this.
    #[arg(long, env = "PROVISIOND_LEASE", default_value = "30s", value_parser = parse_duration)]
    pub lease: Duration,

    /// The fallback sweep for due deliveries (ingestion wakes the dispatcher at once).
    #[arg(long, env = "PROVISIOND_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub poll_interval: Duration,

    /// At SIGTERM/SIGINT, how long attempts in flight may take to finish.
    #[arg(long, env = "PROVISIOND_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// How long execution logs, finished deliveries and their events are kept
    /// (older ones are pruned in the background, in small batches).
    #[arg(long, env = "PROVISIOND_LOG_RETENTION", default_value = "30d", value_parser = parse_duration)]
    pub log_retention: Duration,

    /// Database connections in the pool (SQLite has two more: its writer and its checkpointer).
    #[arg(long, env = "PROVISIOND_DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub db_pool_size: u32,

    /// SQLite: the largest size the database file may grow to, in bytes (0:
    /// no limit). Past it, writes fail as on a full disk — events are answered
    /// 503, results of attempts wait — until space is freed: a guard that
    /// stops the file before it fills the disk.
    #[arg(long, env = "PROVISIOND_SQLITE_MAX_BYTES", default_value_t = 0)]
    pub sqlite_max_bytes: u64,

    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "PROVISIOND_HTTP_WORKERS", default_value_t = 0)]
    pub http_workers: usize,

    /// How long an administrator stays signed in without activity, e.g. `12h`.
    #[arg(long, env = "PROVISIOND_SESSION_TTL", default_value = "12h", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// The absolute lifetime of a session, however active: past it the user signs in again.
    #[arg(long, env = "PROVISIOND_SESSION_MAX_AGE", default_value = "24h", value_parser = parse_duration)]
    pub session_max_age: Duration,

    /// Failed sign-ins for one user name, within the lockout, after which it cannot sign in until the lockout ends.
    #[arg(long, env = "PROVISIOND_LOGIN_MAX_FAILURES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub login_max_failures: u32,

    /// Failed sign-ins from one client address (any user names), within the lockout, after which it cannot sign in until the lockout ends.
    #[arg(long, env = "PROVISIOND_LOGIN_MAX_FAILURES_PER_ADDRESS", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub login_max_failures_per_address: u32,

    /// The window failed sign-ins are counted in, and how long a lockout lasts.
    #[arg(long, env = "PROVISIOND_LOGIN_LOCKOUT", default_value = "15m", value_parser = parse_duration)]
    pub login_lockout: Duration,

    /// How long audit log entries are kept.
    #[arg(long, env = "PROVISIOND_AUDIT_RETENTION", default_value = "365d", value_parser = parse_duration)]
    pub audit_retention: Duration,

    /// Mark cookies `Secure` (set this when the UI is served over HTTPS, e.g. behind a TLS proxy).
    #[arg(long, env = "PROVISIOND_SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Where operational alerts are POSTed (DESIGN §8.6): `handler.failing`,
    /// `handler.recovered`, `handler.disabled`, `delivery.exhausted`, signed
    /// as deliveries are (Standard Webhooks) with `PROVISIOND_ALERT_SECRET`.
    /// Unset: alerts are listed in the UI only.
    #[arg(long, env = "PROVISIOND_ALERT_URL", value_parser = parse_alert_url)]
    pub alert_url: Option<String>,

    /// The `whsec_<base64>` secret alerts are signed with (needed with `PROVISIOND_ALERT_URL`).
    #[arg(long, env = "PROVISIOND_ALERT_SECRET", hide_env_values = true, value_parser = parse_alert_secret)]
    pub alert_secret: Option<String>,

    /// A handler whose every attempt has failed for this long is disabled, with
    /// an alert; `0`: never.
    #[arg(long, env = "PROVISIOND_AUTO_DISABLE_AFTER", default_value = "72h", value_parser = parse_duration)]
    pub auto_disable_after: Duration,

    /// `handler.failing` is raised once this many attempts of a handler have failed in a row.
    #[arg(long, env = "PROVISIOND_ALERT_FAILING_AFTER", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub alert_failing_after: u32,

    /// A handler raises at most one alert of a type within this window (one
    /// alert, not one per delivery).
    #[arg(long, env = "PROVISIOND_ALERT_WINDOW", default_value = "1h", value_parser = parse_duration)]
    pub alert_window: Duration,

    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `provisiond=debug`.
    #[arg(long, env = "PROVISIOND_LOG", default_value = "info")]
    pub log: String,
}

/// An alert URL: `http` or `https`, with a host.
fn parse_alert_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("an http:// or https:// URL with a host".into());
    }
    Ok(url.to_string())
}

/// An alert signing secret: `whsec_` and base64, at least 16 bytes.
fn parse_alert_secret(text: &str) -> Result<String, String> {
    use base64::Engine;
    let key = text.trim().strip_prefix("whsec_").ok_or("a secret of the form whsec_<base64>")?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(bytes) if bytes.len() >= 16 => Ok(text.trim().to_owned()),
        _ => Err("whsec_ and at least 16 bytes in base64".into()),
    }
}

impl Settings {
    /// Settings for a test or an embedding program: defaults, with the given database.
    pub fn with_database(database_url: impl Into<String>) -> Self {
        let mut settings = Settings::parse_from(["provisiond"]);
        settings.database_url = database_url.into();
        settings
    }
}

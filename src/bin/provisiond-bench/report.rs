//! The figures of one run, as the benchmark prints them.

use std::time::Duration;

use crate::Args;

/// What one run measured.
pub struct Report<'a> {
    pub args: &'a Args,
    pub ceiling: Option<f64>,
    pub accepted: usize,
    pub ingest_elapsed: Duration,
    pub delivery_secs: f64,
    pub latencies: Vec<Duration>,
    /// Post-to-202 times, sorted.
    pub acks: Vec<Duration>,
    pub arrived: usize,
    pub duplicates: usize,
    pub peak_rss_kb: u64,
    pub cpu: f64,
    pub bench_cpu: f64,
    pub metrics: String,
    /// The server's `/metrics` as the run started (after `--stuck-chain`'s posts).
    pub metrics_before: String,
    pub ui_times: Vec<Duration>,
    /// With `--backlog`: how the backlog drained once the sink answered.
    pub drain: Option<Drain>,
    /// With `--limited`: the rate the limited handler's events arrived at.
    pub limited: Option<Limited>,
}

/// What the `--limited` handler got.
pub struct Limited {
    pub expected: usize,
    pub arrived: usize,
    /// From its first arrival to its last.
    pub per_second: f64,
    /// The most arrivals within one second (from any arrival on).
    pub busiest_second: usize,
}

/// The drain of a backlog, from the moment the sink answers again.
pub struct Drain {
    /// From the sink's release to the last arrival.
    pub secs: f64,
    /// Events that had reached the sink, unanswered, by then.
    pub held: usize,
    /// The server's CPU time meanwhile.
    pub cpu: f64,
    /// The server's `/metrics` at the release.
    pub metrics_before: String,
}

impl Report<'_> {
    /// A counter of the server's `/metrics`: its growth during the run.
    fn metric(&self, name: &str) -> f64 {
        metric(&self.metrics, name) - metric(&self.metrics_before, name)
    }

    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    /// Prints the figures; true when every event arrived exactly once (with
    /// `--ingest-only`: was accepted and stored once, none delivered).
    pub fn print(&self) -> bool {
        let (n, ok, args) = (self.args.events, self.accepted, self.args);
        let backend = if args.database.is_empty() { "SQLite" } else { "PostgreSQL" };
        println!(
            "provisiond-bench: {n} events, {} connections, {backend}{}{}",
            args.connections,
            args.rate.map(|r| format!(", paced at {r} events/s")).unwrap_or_default(),
            match (args.stuck_chain, args.paused) {
                (0, 0) => String::new(),
                (0, p) => format!(", beside a paused handler with {p} events waiting"),
                (k, _) => format!(", beside {k} events stuck behind a handler that never answers"),
            }
        );
        if args.instances > 1 {
            println!("  {} servers sharing the database; the events posted to the first", args.instances);
        }
        if let Some(c) = self.ceiling {
            println!("  raw sink ceiling      {c:>10.0} requests/s (loopback, same connections)");
        }
        let ingest_secs = self.ingest_elapsed.as_secs_f64();
        println!(
            "  ingest                {:>10.0} events/s  ({ok} accepted with 202 in {ingest_secs:.2} s)",
            ok as f64 / ingest_secs
        );
        if args.ingest_only {
            self.print_acks("post→202");
            self.print_resources();
            self.print_batches();
            let stored = self.metric("provisiond_events_ingested_total") as usize;
            return verdict(
                ok == n && stored == n && self.arrived == 0,
                "every event accepted and stored once (no handler: none delivered)",
                &format!("{ok} of {n} accepted, {stored} stored, {} delivered", self.arrived),
            );
        }
        if let Some(drain) = &self.drain {
            self.print_acks("post→202");
            self.print_drain(drain);
            self.print_resources();
            self.print_batches();
            self.print_ui();
            return self.verdict();
        }
        let rate = self.arrived as f64 / self.delivery_secs;
        println!(
            "  delivered             {rate:>10.0} events/s  (first post to last arrival: {:.2} s){}",
            self.delivery_secs,
            self.ceiling.map(|c| format!(", {:.1} % of the ceiling", 100.0 * rate / c)).unwrap_or_default()
        );
        println!(
            "  latency post→arrival  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            ms(self.percentile(0.50)),
            ms(self.percentile(0.90)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default())
        );
        self.print_acks("of which post→202");
        if let Some(limited) = &self.limited {
            println!(
                "  limited handler       {:>10.2} attempts/s  (limit {}: {} of {} arrived; at most {} within a second)",
                limited.per_second,
                self.args.limited.unwrap_or_default(),
                limited.arrived,
                limited.expected,
                limited.busiest_second
            );
        }
        self.print_resources();
        self.print_batches();
        self.print_ui();
        self.verdict()
    }

    fn verdict(&self) -> bool {
        let (n, ok) = (self.args.events, self.accepted);
        let limited_ok = self.limited.as_ref().is_none_or(|l| l.arrived == l.expected);
        verdict(
            self.arrived == n && self.duplicates == 0 && ok == n && limited_ok,
            "every event arrived exactly once",
            &format!(
                "{} of {n} arrived, {} duplicates, {ok} accepted{}",
                self.arrived,
                self.duplicates,
                self.limited
                    .as_ref()
                    .map(|l| format!("; limited handler: {} of {}", l.arrived, l.expected))
                    .unwrap_or_default()
            ),
        )
    }

    /// The backlog's drain: its rate, and the server's CPU and claims meanwhile.
    fn print_drain(&self, drain: &Drain) {
        let n = self.args.events;
        println!(
            "  backlog drained       {:>10.0} events/s  ({n} waiting, {} of them at the handler unanswered; all arrived {:.2} s after it answered again)",
            n as f64 / drain.secs,
            drain.held,
            drain.secs
        );
        let during = |name: &str| metric(&self.metrics, name) - metric(&drain.metrics_before, name);
        let claims = during("provisiond_claims_total");
        println!(
            "  during the drain      {:.1} µs/event of server CPU, {:.1} deliveries per claim, {:.3} ms each in their statements ({claims:.0} claims)",
            drain.cpu * 1e6 / n as f64,
            during("provisiond_claimed_total") / claims.max(1.0),
            during("provisiond_claim_seconds_total") * 1e3 / claims.max(1.0),
        );
    }

    fn print_acks(&self, label: &str) {
        println!(
            "  {label:<21} p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  (stored and committed)",
            ms(percentile(&self.acks, 0.50)),
            ms(percentile(&self.acks, 0.90)),
            ms(percentile(&self.acks, 0.99)),
        );
    }

    fn print_resources(&self) {
        println!("  server peak RSS       {:>10.1} MB", self.peak_rss_kb as f64 / 1024.0);
        println!(
            "  server CPU            {:>10.1} µs/event  ({:.2} s in all; load generator and sink: {:.2} s)",
            self.cpu * 1e6 / self.args.events as f64,
            self.cpu,
            self.bench_cpu
        );
    }

    /// Batch sizes and claim times, from the server's `/metrics`.
    fn print_batches(&self) {
        let (ingests, claims, records) = (
            self.metric("provisiond_ingest_commits_total"),
            self.metric("provisiond_claims_total"),
            self.metric("provisiond_record_commits_total"),
        );
        let events_per_batch = self.metric("provisiond_events_ingested_total") / ingests.max(1.0);
        if self.args.ingest_only {
            println!("  batches               {events_per_batch:.1} events per ingest batch");
            return;
        }
        println!(
            "  batches               {events_per_batch:.1} events per ingest batch, {:.1} deliveries per claim, {:.1} attempts per record batch",
            self.metric("provisiond_claimed_total") / claims.max(1.0),
            self.metric("provisiond_attempts_total{outcome=\"success\"}") / records.max(1.0),
        );
        println!(
            "  claims                {:.3} ms each in their statements ({:.0} claims)",
            self.metric("provisiond_claim_seconds_total") * 1e3 / claims.max(1.0),
            claims
        );
        let commits = self.metric("provisiond_sqlite_write_commits_total");
        if commits > 0.0 {
            println!(
                "                        {:.2} writes per SQLite commit ({:.0} commits)",
                self.metric("provisiond_sqlite_writes_total") / commits,
                commits
            );
        }
    }

    fn print_ui(&self) {
        let mut ui = self.ui_times.clone();
        ui.sort();
        if let (Some(median), Some(worst)) = (ui.get(ui.len() / 2), ui.last()) {
            println!(
                "  UI during the run     handler list median {:.1} ms, worst {:.1} ms ({} requests)",
                ms(*median),
                ms(*worst),
                ui.len()
            );
        }
    }
}

/// A figure of a `/metrics` text.
fn metric(metrics: &str, name: &str) -> f64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Prints the check's outcome and returns it.
fn verdict(exact: bool, passed: &str, failed: &str) -> bool {
    if exact {
        println!("  check                 {passed}");
    } else {
        println!("  check                 FAILED: {failed}");
    }
    exact
}

/// The `p` quantile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or_default()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

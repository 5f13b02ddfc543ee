//! This process's counters and their Prometheus text (`/metrics`).

use std::{
    fmt::Write,
    sync::atomic::{AtomicU64, Ordering, Ordering::Relaxed},
};

use crate::domain::Outcome;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub deliveries_created: AtomicU64,
    /// By outcome, in the order of [`Outcome::ALL`].
    pub attempts: [AtomicU64; 7],
    /// Ingestion transactions (group commits) and claim and record
    /// transactions: with the counts above, the average batch sizes.
    pub ingest_commits: AtomicU64,
    pub claims: AtomicU64,
    pub claimed: AtomicU64,
    /// Time spent in the claims' statements, in microseconds (on SQLite
    /// without the wait for the writer).
    pub claim_micros: AtomicU64,
    pub record_commits: AtomicU64,
}

const _: () = assert!(Outcome::ALL.len() == 7, "one attempt counter per outcome");

/// Figures of the database shown beside the counters, where it answered.
#[derive(Debug, Default)]
pub struct DatabaseFigures {
    /// What the SQLite writer has done (none on PostgreSQL).
    pub sqlite_writer: Option<crate::db::WriterCounts>,
    /// Deliveries pending or in flight, of all processes.
    pub unfinished_deliveries: Option<i64>,
}

impl Metrics {
    pub fn count_attempt(&self, outcome: Outcome) {
        let i = Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(0);
        self.attempts[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of the counters and `db`.
    pub fn prometheus(&self, db: &DatabaseFigures) -> String {
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(text, "# HELP {name} {help}");
            let _ = writeln!(text, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(text, "{name}{labels} {value}");
            }
        };
        let plain = |value: &AtomicU64| vec![(String::new(), value.load(Relaxed).to_string())];
        family(
            "provisiond_events_ingested_total",
            "counter",
            "Events accepted by this process.",
            &plain(&self.events_ingested),
        );
        family(
            "provisiond_deliveries_created_total",
            "counter",
            "Deliveries created by this process's ingestion.",
            &plain(&self.deliveries_created),
        );
        let by_outcome: Vec<(String, String)> = Outcome::ALL
            .iter()
            .zip(&self.attempts)
            .map(|(o, n)| (format!("{{outcome=\"{}\"}}", o.as_str()), n.load(Relaxed).to_string()))
            .collect();
        family(
            "provisiond_attempts_total",
            "counter",
            "Delivery attempts recorded by this process, by outcome.",
            &by_outcome,
        );
        for (name, help, value) in [
            (
                "provisiond_ingest_commits_total",
                "Ingestion batches (on SQLite one may share its commit with other writes).",
                &self.ingest_commits,
            ),
            ("provisiond_claims_total", "Claim queries run by the dispatcher.", &self.claims),
            ("provisiond_claimed_total", "Deliveries claimed.", &self.claimed),
            (
                "provisiond_record_commits_total",
                "Batches of finished attempts recorded (on SQLite one may share its commit with other writes).",
                &self.record_commits,
            ),
        ] {
            family(name, "counter", help, &plain(value));
        }
        let claim_seconds = self.claim_micros.load(Relaxed) as f64 / 1e6;
        family(
            "provisiond_claim_seconds_total",
            "counter",
            "Time spent in the claims' statements.",
            &[(String::new(), claim_seconds.to_string())],
        );
        if let Some(counts) = db.sqlite_writer {
            family(
                "provisiond_sqlite_write_commits_total",
                "counter",
                "Transactions of the SQLite writer.",
                &[(String::new(), counts.commits.to_string())],
            );
            family(
                "provisiond_sqlite_writes_total",
                "counter",
                "Writes the SQLite writer ran in its transactions (several share one).",
                &[(String::new(), counts.jobs.to_string())],
            );
        }
        if let Some(n) = db.unfinished_deliveries {
            family(
                "provisiond_deliveries_unfinished",
                "gauge",
                "Deliveries pending or in flight (all processes).",
                &[(String::new(), n.to_string())],
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_help_type_and_samples_and_outcomes_are_labelled() {
        let m = Metrics::default();
        m.count_attempt(Outcome::Timeout);
        m.count_attempt(Outcome::Timeout);
        let text = m.prometheus(&DatabaseFigures { sqlite_writer: None, unfinished_deliveries: Some(3) });
        assert!(text.contains("provisiond_attempts_total{outcome=\"timeout\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE provisiond_deliveries_unfinished gauge\nprovisiond_deliveries_unfinished 3\n"));
        assert!(!text.contains("sqlite_write_commits"), "no SQLite figure on PostgreSQL");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} has its TYPE");
        }
    }
}

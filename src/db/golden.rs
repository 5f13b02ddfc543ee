//! Golden files of the SQL that runs: every hot statement, expanded for each
//! backend, is in `tests/sql/<name>.<backend>.sql`, so a review sees the real
//! text and any change to it shows in the diff. `PROVISIOND_BLESS_SQL=1 cargo
//! test golden` writes them after a deliberate change.
//!
//! The statements spell the delivery states and outcomes as SQL literals
//! (the partial indexes' predicates need literals to be used); the test holds
//! every such literal to the domain's texts.

use std::{collections::BTreeSet, path::PathBuf};

use super::Backend;
use crate::domain::{DeliveryState, HandlerStatus, Outcome};

fn statements() -> Vec<(&'static str, Backend, String)> {
    let mut all = super::claims::statements();
    all.extend(super::events::statements());
    all.extend(super::deliveries::statements());
    all
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sql")
}

fn file_name(name: &str, backend: Backend) -> String {
    let backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    format!("{name}.{backend}.sql")
}

/// The text as written to its file: each line without the indentation of
/// Rust source, one statement per file.
fn as_file(sql: &str) -> String {
    let lines: Vec<&str> = sql.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    let indent = lines.iter().skip(1).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let line = if i == 0 { line.trim_start() } else { &line[indent.min(line.len() - line.trim_start().len())..] };
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn the_hot_statements_are_as_their_golden_files_say() {
    let bless = std::env::var_os("PROVISIOND_BLESS_SQL").is_some();
    let mut names = BTreeSet::new();
    let mut differ = Vec::new();
    for (name, backend, sql) in statements() {
        let file = file_name(name, backend);
        assert!(names.insert(file.clone()), "{file} twice");
        let path = dir().join(&file);
        let text = as_file(&sql);
        if bless {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            differ.push(file);
        }
    }
    assert!(
        differ.is_empty(),
        "the SQL of {differ:?} is not what tests/sql holds; after a deliberate change run \
         `PROVISIOND_BLESS_SQL=1 cargo test golden` and review the diff"
    );
    let on_disk: BTreeSet<String> =
        std::fs::read_dir(dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    let stale: Vec<&String> = on_disk.difference(&names).collect();
    assert!(stale.is_empty(), "golden files of no statement: {stale:?}");
}

#[test]
fn postgresql_reads_a_list_of_ids_as_an_array_never_as_a_join() {
    for (name, backend, sql) in statements() {
        if backend == Backend::Postgres {
            assert!(!sql.contains("IN (SELECT value::bigint FROM jsonb"), "{name}: `= ANY(ARRAY(…))`, not `IN (…)`");
            assert!(!sql.contains("json_each"), "{name}: json_each is SQLite's");
        } else {
            assert!(!sql.contains("jsonb"), "{name}: jsonb is PostgreSQL's");
        }
    }
}

#[test]
fn the_states_and_outcomes_the_sql_spells_are_the_domains() {
    let state = regex::Regex::new(r"state\s*(?:=|IN)\s*\(?((?:'[a-z_]+'(?:,\s*)?)+)").unwrap();
    let quoted = regex::Regex::new(r"'([a-z_]+)'").unwrap();
    let mut seen = 0;
    for (name, _, sql) in statements() {
        for found in state.captures_iter(&sql) {
            for word in quoted.captures_iter(&found[1]) {
                seen += 1;
                let word = &word[1];
                let known = word.parse::<DeliveryState>().is_ok() || word.parse::<HandlerStatus>().is_ok();
                assert!(known, "{name}: `{word}` is no delivery state nor handler status");
            }
        }
        if sql.contains("INSERT INTO execution_logs") {
            for word in ["interrupted", "cancelled"].iter().filter(|w| sql.contains(&format!("'{w}'"))) {
                assert!(word.parse::<Outcome>().is_ok(), "{name}: outcome `{word}`");
            }
        }
    }
    assert!(seen > 20, "the pattern found the states ({seen})");
}

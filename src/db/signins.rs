//! The `login_failures` table: failed sign-ins by user name and by client
//! address, for throttling (DESIGN §8.3). Shared by every instance on one
//! database, so a lockout holds whichever instance a guess reaches.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Read, Write, now, schema::login_failures};

/// The failures of one key since a time: how many, and the latest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: i64,
    pub latest: Option<NaiveDateTime>,
}

/// Records a failed sign-in under each of `keys` (`user:…`, `addr:…`).
pub fn record_failure(conn: &mut Write<'_>, keys: &[String]) -> QueryResult<()> {
    let at = now();
    for key in keys {
        diesel::insert_into(login_failures::table)
            .values((login_failures::key.eq(key), login_failures::at.eq(at)))
            .execute(conn.db())?;
    }
    Ok(())
}

/// The failures under `key` after `since`.
pub fn failures_since(conn: &mut Read<'_>, key: &str, since: NaiveDateTime) -> QueryResult<Failures> {
    let (count, latest): (i64, Option<NaiveDateTime>) = login_failures::table
        .filter(login_failures::key.eq(key))
        .filter(login_failures::at.gt(since))
        .select((diesel::dsl::count_star(), diesel::dsl::max(login_failures::at)))
        .first(conn.db())?;
    Ok(Failures { count, latest })
}

/// Forgets the failures under `key` (a successful sign-in of that user).
pub fn clear(conn: &mut Write<'_>, key: &str) -> QueryResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::key.eq(key))).execute(conn.db()).map(drop)
}

/// Removes the failures from before `before`.
pub fn prune(conn: &mut Write<'_>, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(login_failures::table.filter(login_failures::at.le(before))).execute(conn.db())
}

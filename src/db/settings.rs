//! The `settings` table: values the server generates once and keeps.

use diesel::prelude::*;

use super::{DbConnection, now, schema::settings};

pub const API_TOKEN_SHA256: &str = "api_token_sha256";

pub fn get(conn: &mut DbConnection, name: &str) -> QueryResult<Option<String>> {
    settings::table.find(name).select(settings::value).first(conn).optional()
}

/// Stores `value` unless the setting exists; returns what is stored. Two
/// processes starting at once agree on one value.
pub fn insert_if_absent(conn: &mut DbConnection, name: &str, value: &str) -> QueryResult<String> {
    let inserted = diesel::insert_into(settings::table)
        .values((settings::name.eq(name), settings::value.eq(value), settings::updated_at.eq(now())))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(value.to_owned()),
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            get(conn, name)?.ok_or(diesel::result::Error::NotFound)
        }
        Err(e) => Err(e),
    }
}

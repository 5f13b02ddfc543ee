//! The `settings` table: values the server generates once and keeps.

use diesel::prelude::*;

use super::{Read, Write, now, schema::settings};

pub const API_TOKEN_SHA256: &str = "api_token_sha256";

pub fn get(conn: &mut Read<'_>, name: &str) -> QueryResult<Option<String>> {
    settings::table.find(name).select(settings::value).first(conn.db()).optional()
}

/// Stores `value` unless the setting exists; returns what is stored. Two
/// processes starting at once agree on one value.
pub fn insert_if_absent(conn: &mut Write<'_>, name: &str, value: &str) -> QueryResult<String> {
    // A row another writer stored first is kept (and no error aborts the
    // transaction on PostgreSQL).
    use diesel::sql_types::{Text, Timestamp};
    diesel::sql_query(
        "INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind::<Text, _>(name)
    .bind::<Text, _>(value)
    .bind::<Timestamp, _>(now())
    .execute(conn.db())?;
    get(conn, name)?.ok_or(diesel::result::Error::NotFound)
}

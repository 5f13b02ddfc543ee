//! Throw-away PostgreSQL databases, for the benchmark's runs.

use diesel::{Connection, PgConnection, RunQueryDsl};

use super::DbError;

/// Creates database `name` on the server of `admin_url`; `name` is the
/// caller's own identifier (letters, digits, `_`).
pub fn create_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let mut conn = PgConnection::establish(admin_url)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn)?;
    Ok(())
}

/// Drops database `name`, closing its connections.
pub fn drop_database(admin_url: &str, name: &str) -> Result<(), DbError> {
    let mut conn = PgConnection::establish(admin_url)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn)?;
    Ok(())
}

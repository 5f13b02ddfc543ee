//! The `sessions` table: signed-in administrators. The cookie holds a random
//! token; only its SHA-256 is stored, so a leaked database signs no one in.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Read, Write, admins::Admin, now, schema::admins, schema::sessions};

#[derive(Debug, Clone, Queryable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub token_hash: String,
    #[allow(dead_code, reason = "a column of the row; the account comes joined")]
    pub admin_id: i64,
    pub csrf_token: String,
    pub flash: Option<String>,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

impl Session {
    pub fn create(
        conn: &mut Write<'_>,
        token_hash: &str,
        admin_id: i64,
        csrf_token: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<()> {
        diesel::insert_into(sessions::table)
            .values((
                sessions::token_hash.eq(token_hash),
                sessions::admin_id.eq(admin_id),
                sessions::csrf_token.eq(csrf_token),
                sessions::created_at.eq(now()),
                sessions::expires_at.eq(expires_at),
            ))
            .execute(conn.db())
            .map(drop)
    }

    /// The live session of a token hash, with its account: neither idle
    /// past its expiry nor older than `max_age` (the absolute lifetime).
    pub fn find_live(
        conn: &mut Read<'_>,
        token_hash: &str,
        max_age: chrono::TimeDelta,
    ) -> QueryResult<Option<(Session, Admin)>> {
        let found: Option<(Session, Admin)> = sessions::table
            .inner_join(admins::table)
            .filter(sessions::token_hash.eq(token_hash))
            .first(conn.db())
            .optional()?;
        // An expired one is as good as gone; the upkeep removes it.
        let at = now();
        Ok(found.filter(|(s, _)| s.expires_at > at && s.created_at + max_age > at))
    }

    /// Pushes the expiry forward (sliding sessions).
    pub fn extend(conn: &mut Write<'_>, token_hash: &str, expires_at: NaiveDateTime) -> QueryResult<()> {
        diesel::update(sessions::table.find(token_hash))
            .set(sessions::expires_at.eq(expires_at))
            .execute(conn.db())
            .map(drop)
    }

    pub fn set_flash(conn: &mut Write<'_>, token_hash: &str, message: Option<&str>) -> QueryResult<()> {
        diesel::update(sessions::table.find(token_hash)).set(sessions::flash.eq(message)).execute(conn.db()).map(drop)
    }

    pub fn delete(conn: &mut Write<'_>, token_hash: &str) -> QueryResult<()> {
        diesel::delete(sessions::table.find(token_hash)).execute(conn.db()).map(drop)
    }

    /// Removes the sessions idle past their expiry or older than `max_age`.
    pub fn delete_expired(conn: &mut Write<'_>, max_age: chrono::TimeDelta) -> QueryResult<usize> {
        let at = now();
        diesel::delete(sessions::table.filter(sessions::expires_at.le(at).or(sessions::created_at.le(at - max_age))))
            .execute(conn.db())
    }
}

//! The `admins` table: the user accounts that sign in to the web UI, each
//! with a role (DESIGN §8.3).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Read, Write, now, schema::admins, schema::sessions};

#[derive(Debug, Clone, Queryable, Identifiable)]
#[diesel(table_name = admins)]
pub struct Admin {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub role: String,
}

impl Admin {
    pub fn find_by_username(conn: &mut Read<'_>, username: &str) -> QueryResult<Option<Admin>> {
        admins::table.filter(admins::username.eq(username)).first(conn.db()).optional()
    }

    pub fn find(conn: &mut Read<'_>, id: i64) -> QueryResult<Admin> {
        admins::table.find(id).first(conn.db())
    }

    /// Every account, by user name.
    pub fn list(conn: &mut Read<'_>) -> QueryResult<Vec<Admin>> {
        admins::table.order(admins::username.asc()).load(conn.db())
    }

    /// How many accounts have role `role`.
    pub fn count_with_role(conn: &mut Read<'_>, role: &str) -> QueryResult<i64> {
        admins::table.filter(admins::role.eq(role)).count().get_result(conn.db())
    }

    pub fn create(conn: &mut Write<'_>, username: &str, password_hash: &str, role: &str) -> QueryResult<Admin> {
        let at = now();
        diesel::insert_into(admins::table)
            .values((
                admins::username.eq(username),
                admins::password_hash.eq(password_hash),
                admins::role.eq(role),
                admins::created_at.eq(at),
                admins::updated_at.eq(at),
            ))
            .execute(conn.db())?;
        admins::table.filter(admins::username.eq(username)).first(conn.db())
    }

    /// A new password: every session of the account ends.
    pub fn set_password_hash(conn: &mut Write<'_>, id: i64, password_hash: &str) -> QueryResult<()> {
        diesel::update(admins::table.find(id))
            .set((admins::password_hash.eq(password_hash), admins::updated_at.eq(now())))
            .execute(conn.db())?;
        Self::end_sessions(conn, id)
    }

    /// A new role: every session of the account ends.
    pub fn set_role(conn: &mut Write<'_>, id: i64, role: &str) -> QueryResult<()> {
        diesel::update(admins::table.find(id))
            .set((admins::role.eq(role), admins::updated_at.eq(now())))
            .execute(conn.db())?;
        Self::end_sessions(conn, id)
    }

    /// Deletes account `id` and its sessions; returns it.
    pub fn delete(conn: &mut Write<'_>, id: i64) -> QueryResult<Admin> {
        let admin = admins::table.find(id).first::<Admin>(conn.db())?;
        Self::end_sessions(conn, id)?;
        diesel::delete(admins::table.find(id)).execute(conn.db())?;
        Ok(admin)
    }

    fn end_sessions(conn: &mut Write<'_>, id: i64) -> QueryResult<()> {
        diesel::delete(sessions::table.filter(sessions::admin_id.eq(id))).execute(conn.db()).map(drop)
    }
}

//! The `admins` table: administrators who sign in to the web UI.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Read, Write, now, schema::admins};

#[derive(Debug, Clone, Queryable, Identifiable)]
#[diesel(table_name = admins)]
pub struct Admin {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Admin {
    pub fn find_by_username(conn: &mut Read<'_>, username: &str) -> QueryResult<Option<Admin>> {
        admins::table.filter(admins::username.eq(username)).first(conn.db()).optional()
    }

    pub fn create(conn: &mut Write<'_>, username: &str, password_hash: &str) -> QueryResult<Admin> {
        let at = now();
        diesel::insert_into(admins::table)
            .values((
                admins::username.eq(username),
                admins::password_hash.eq(password_hash),
                admins::created_at.eq(at),
                admins::updated_at.eq(at),
            ))
            .execute(conn.db())?;
        admins::table.filter(admins::username.eq(username)).first(conn.db())
    }

    pub fn set_password_hash(conn: &mut Write<'_>, id: i64, password_hash: &str) -> QueryResult<()> {
        diesel::update(admins::table.find(id))
            .set((admins::password_hash.eq(password_hash), admins::updated_at.eq(now())))
            .execute(conn.db())
            .map(drop)
    }
}

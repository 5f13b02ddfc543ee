//! The `api_tokens` table: named bearer tokens with a scope (DESIGN §8.3).
//! Only a token's SHA-256 is stored; its first characters (`prefix`) find
//! the row and the hash is compared in constant time.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{Read, Write, now, schema::api_tokens};

#[derive(Debug, Clone, Queryable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub scope: String,
    pub prefix: String,
    pub token_hash: String,
    pub created_by: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
}

impl ApiToken {
    pub fn create(
        conn: &mut Write<'_>,
        name: &str,
        scope: &str,
        prefix: &str,
        token_hash: &str,
        created_by: &str,
    ) -> QueryResult<ApiToken> {
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::name.eq(name),
                api_tokens::scope.eq(scope),
                api_tokens::prefix.eq(prefix),
                api_tokens::token_hash.eq(token_hash),
                api_tokens::created_by.eq(created_by),
                api_tokens::created_at.eq(now()),
            ))
            .execute(conn.db())?;
        api_tokens::table.filter(api_tokens::name.eq(name)).first(conn.db())
    }

    /// Every token, the live ones first, newest first.
    pub fn list(conn: &mut Read<'_>) -> QueryResult<Vec<ApiToken>> {
        let mut all: Vec<ApiToken> = api_tokens::table.order(api_tokens::id.desc()).load(conn.db())?;
        all.sort_by_key(|t| t.revoked_at.is_some());
        Ok(all)
    }

    /// The live tokens whose prefix is `prefix` (one, but for a collision).
    pub fn live_with_prefix(conn: &mut Read<'_>, prefix: &str) -> QueryResult<Vec<ApiToken>> {
        api_tokens::table.filter(api_tokens::prefix.eq(prefix)).filter(api_tokens::revoked_at.is_null()).load(conn.db())
    }

    /// Marks token `id` revoked; `None` when it already was.
    pub fn revoke(conn: &mut Write<'_>, id: i64) -> QueryResult<Option<ApiToken>> {
        let token = api_tokens::table.find(id).first::<ApiToken>(conn.db())?;
        if token.revoked_at.is_some() {
            return Ok(None);
        }
        diesel::update(api_tokens::table.find(id)).set(api_tokens::revoked_at.eq(now())).execute(conn.db())?;
        api_tokens::table.find(id).first(conn.db()).map(Some)
    }

    /// Records that token `id` was used at `at`.
    pub fn touch(conn: &mut Write<'_>, id: i64, at: NaiveDateTime) -> QueryResult<()> {
        diesel::update(api_tokens::table.find(id)).set(api_tokens::last_used_at.eq(at)).execute(conn.db()).map(drop)
    }
}

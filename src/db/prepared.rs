//! Raw SQL that stays prepared.
//!
//! Diesel prepares `sql_query`, every `UPDATE`, every `eq_any` and every
//! multi-row `INSERT` afresh each time it runs them; on the dispatcher's hot
//! path (ingestion, claims, recording) parsing and planning the statements
//! cost as much as running them. SQL written with [`cached`] has fixed text —
//! a list is bound as one JSON array, never spliced in — so each connection's
//! statement cache keeps it prepared after its first use.
//!
//! A statement whose text differs between the backends is a [`ByBackend`],
//! both texts written out in full. A list of ids is bound as one JSON array
//! and read on PostgreSQL as `= ANY(ARRAY(SELECT value::bigint FROM
//! jsonb_array_elements_text($n::jsonb)))` — index lookups of the few ids (a
//! set-returning function in `IN (…)` is planned as a join estimated at 100
//! rows, and became a scan of the whole table) — and on SQLite as `IN (SELECT
//! value FROM json_each($n))`. A subquery that picks rows to change takes
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite has one writer at a time,
//! and no row locks). The texts as they run are in `tests/sql/`.
//!
//! Parameters are written `$1`, `$2`, … on both backends. SQLite numbers `$N`
//! parameters in the order they first appear in the text, so they must first
//! appear in increasing order (checked in debug builds).

use std::marker::PhantomData;

use diesel::{
    QueryResult, RunQueryDsl,
    backend::Backend as DieselBackend,
    query_builder::{AstPass, Query, QueryFragment, QueryId},
    serialize::ToSql,
    sql_types::{HasSqlType, Untyped},
};

use super::DbConnection;

/// A statement with fixed text; bind its parameters with [`Cached::bind`].
#[derive(Debug, Clone, Copy)]
#[must_use = "a statement runs only when executed or loaded"]
pub struct Cached(&'static str);

/// SQL to keep prepared (see the module documentation).
pub fn cached(sql: &'static str) -> Cached {
    debug_assert!(parameters_in_order(sql), "parameters must first appear as $1, $2, …: {sql}");
    Cached(sql)
}

impl Cached {
    /// Binds the next parameter (`$1` first).
    pub fn bind<ST, V>(self, value: V) -> Bound<Self, V, ST> {
        Bound { query: self, value, sql_type: PhantomData }
    }
}

impl<DB: DieselBackend> QueryFragment<DB> for Cached {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        // Unlike `sql_query`, no `unsafe_to_cache_prepared`: the text never varies.
        out.push_sql(self.0);
        Ok(())
    }
}

impl QueryId for Cached {
    type QueryId = ();
    // Cached by its text (and bind types), not by a Rust type.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Cached {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Cached {}

/// A [`Cached`] statement with its parameters so far.
#[derive(Debug, Clone, Copy)]
#[must_use = "a statement runs only when executed or loaded"]
pub struct Bound<Q, V, ST> {
    query: Q,
    value: V,
    sql_type: PhantomData<ST>,
}

impl<Q, V, ST> Bound<Q, V, ST> {
    /// Binds the next parameter.
    pub fn bind<ST2, V2>(self, value: V2) -> Bound<Self, V2, ST2> {
        Bound { query: self, value, sql_type: PhantomData }
    }
}

impl<Q, V, ST, DB> QueryFragment<DB> for Bound<Q, V, ST>
where
    DB: DieselBackend + HasSqlType<ST>,
    Q: QueryFragment<DB>,
    V: ToSql<ST, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.query.walk_ast(out.reborrow())?;
        out.push_bind_param_value_only(&self.value)
    }
}

impl<Q, V, ST> QueryId for Bound<Q, V, ST> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q, V, ST> Query for Bound<Q, V, ST> {
    type SqlType = Untyped;
}

impl<Q, V, ST, Conn> RunQueryDsl<Conn> for Bound<Q, V, ST> {}

/// One statement's text for each backend, each written out in full.
#[derive(Debug, Clone, Copy)]
pub struct ByBackend {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl ByBackend {
    /// The statement for the backend of `conn`.
    pub fn on(&self, conn: &DbConnection) -> Cached {
        match conn {
            DbConnection::Postgres(_) => cached(self.postgres),
            DbConnection::Sqlite(_) => cached(self.sqlite),
        }
    }
}

/// A list of ids as one bindable JSON array (`[1,2,3]`).
pub fn id_list(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8 + 2);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

/// True when every `$N` first appears after `$1` … `$N-1`.
fn parameters_in_order(sql: &str) -> bool {
    let mut next = 1;
    let bytes = sql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let digits: String = sql[i + 1..].chars().take_while(char::is_ascii_digit).collect();
            if let Ok(n) = digits.parse::<usize>() {
                if n > next {
                    return false;
                }
                if n == next {
                    next += 1;
                }
            }
            i += 1 + digits.len();
        } else {
            i += 1;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_must_first_appear_in_order() {
        assert!(parameters_in_order("SELECT $1, $2, $1, $3"));
        assert!(parameters_in_order("SELECT 1"));
        assert!(!parameters_in_order("SELECT $2, $1"));
        assert!(!parameters_in_order("SELECT $1, $3, $2"));
    }

    #[test]
    fn id_lists_are_json_arrays() {
        assert_eq!(id_list(&[]), "[]");
        assert_eq!(id_list(&[7]), "[7]");
        assert_eq!(id_list(&[1, -2, 30]), "[1,-2,30]");
    }
}

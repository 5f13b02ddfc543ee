//! The big history `provisiond-seed` writes, with set-based SQL on either
//! backend, and the query plans it prints: for measuring the pages on a
//! database the size of a busy year, never for a server's own use.

use diesel::{QueryableByName, RunQueryDsl, connection::SimpleConnection, sql_types::Text};

use super::{Backend, DbConnection, QueryResult, Read, Write};
use crate::catalogue;

/// `CASE n % 27 WHEN 0 THEN 'clients.create' … END`: an event id for a number.
fn event_case(n: &str, entity: bool) -> String {
    let arms: String = catalogue::EVENTS
        .iter()
        .enumerate()
        .map(|(i, e)| format!(" WHEN {i} THEN '{}'", if entity { e.entity() } else { e.id }))
        .collect();
    format!("(CASE ({n}) % {}{arms} END)", catalogue::EVENTS.len())
}

/// A timestamp `seconds` before now, as each backend writes it.
fn ago(backend: Backend, seconds: &str) -> String {
    match backend {
        Backend::Postgres => format!("(timezone('utc', now()) - (({seconds}) * interval '1 second'))"),
        Backend::Sqlite => format!("strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ({seconds}) || ' seconds')"),
    }
}

/// Numbers 1..=n as a row source named `s(g)`.
fn series(backend: Backend, n: i64) -> (String, String) {
    match backend {
        Backend::Postgres => (String::new(), format!("generate_series(1, {n}) AS s(g)")),
        Backend::Sqlite => {
            (format!("WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {n}) "), "s".into())
        }
    }
}

pub fn seed(conn: &mut Write<'_>, handlers: i64, logs: i64) -> QueryResult<()> {
    let backend = match conn.db() {
        DbConnection::Postgres(_) => Backend::Postgres,
        DbConnection::Sqlite(_) => Backend::Sqlite,
    };
    let deliveries = (logs / 4).max(1);
    let span = 29 * 24 * 3600; // seconds of history
    let (with_h, from_h) = series(backend, handlers);
    let (with_e, from_e) = series(backend, deliveries);
    let now = ago(backend, "0");
    let statements = [
        format!(
            "{with_h}INSERT INTO handlers (name, events_id, handler_type, target, status, priority, timeout_ms, secret, created_at, updated_at)
             SELECT 'Handler ' || g, {ev}, 'http', 'http://127.0.0.1:9/hook/' || g,
                    CASE WHEN g % 10 = 0 THEN 'disabled' WHEN g % 25 = 0 THEN 'archived' ELSE 'enabled' END,
                    g % 1000, 10000, 'whsec_c2VlZHNlZWRzZWVkc2VlZHNlZWRzZWVk', {now}, {now}
             FROM {from_h}",
            ev = event_case("g", false)
        ),
        format!(
            "{with_e}INSERT INTO events (events_id, entity, object_id, payload, received_at)
             SELECT {ev}, {entity}, '' || (g % 50000),
                    '{{\"event\":{{\"dt\":\"2026-11-01T00:00:00+00:00\",\"events_id\":\"' || {ev} || '\",\"object_id\":' || (g % 50000) || '}},\"data\":{{\"id\":' || (g % 50000) || ',\"name\":\"Client ' || g || '\"}}}}',
                    {at}
             FROM {from_e}",
            ev = event_case("g", false),
            entity = event_case("g", true),
            at = ago(backend, &format!("{span} - CAST(g AS BIGINT) * {span} / {deliveries}")),
        ),
        format!(
            "INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts, max_attempts,
                                     first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
             SELECT e.id, 1 + (e.id % {handlers}), 'msg_seed_' || e.id, 0, e.entity, e.object_id,
                    CASE WHEN e.id % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 4, 4, TRUE, e.received_at, e.received_at, e.received_at,
                    'http://127.0.0.1:9/hook/' || (1 + e.id % {handlers})
             FROM events e"
        ),
        String::from(
            "INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt, started_at, duration_ms,
                                         outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
             SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, a.n, e.received_at, 5 + (d.id * a.n) % 200,
                    CASE WHEN a.n = 4 AND d.state = 'succeeded' THEN 'success'
                         WHEN a.n = 2 THEN 'timeout' WHEN a.n = 3 THEN 'connection_error' ELSE 'http_error' END,
                    CASE WHEN a.n = 4 AND d.state = 'succeeded' THEN 200 WHEN a.n IN (1, 4) THEN 503 ELSE NULL END,
                    e.payload, '{\"content-type\":\"application/json\"}',
                    CASE WHEN a.n = 4 AND d.state = 'succeeded' THEN '{\"ok\":true}' ELSE 'Service Unavailable' END,
                    CASE WHEN a.n = 4 AND d.state = 'succeeded' THEN NULL WHEN a.n = 2 THEN 'no complete answer within the timeout'
                         WHEN a.n = 3 THEN 'connection refused' ELSE 'HTTP 503 Service Unavailable' END,
                    NULL
             FROM deliveries d JOIN events e ON e.id = d.event_id
             CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) a"
        ),
    ];
    let hour = match backend {
        Backend::Postgres => "date_trunc('hour', started_at)",
        Backend::Sqlite => "strftime('%Y-%m-%d %H:00:00', started_at)",
    };
    let stats = format!(
        "INSERT INTO handler_stats (handler_id, hour, attempts, successes)
         SELECT handler_id, {hour}, COUNT(*), SUM(CASE WHEN outcome = 'success' THEN 1 ELSE 0 END)
         FROM execution_logs WHERE started_at >= {since} AND handler_id IN (SELECT id FROM handlers)
         GROUP BY handler_id, {hour}",
        since = ago(backend, "48 * 3600")
    );
    for sql in statements.into_iter().chain([stats]) {
        diesel::sql_query(sql).execute(conn.db())?;
    }
    match conn.db() {
        DbConnection::Postgres(c) => c.batch_execute("ANALYZE"),
        DbConnection::Sqlite(c) => c.batch_execute("ANALYZE"),
    }
}

/// `n` unfinished deliveries of handler 1, each with an event of its own.
pub fn seed_backlog(conn: &mut Write<'_>, n: i64) -> QueryResult<()> {
    if n == 0 {
        return Ok(());
    }
    let backend = match conn.db() {
        DbConnection::Postgres(_) => Backend::Postgres,
        DbConnection::Sqlite(_) => Backend::Sqlite,
    };
    let (with, from) = series(backend, n);
    let (now, tomorrow) = match backend {
        Backend::Postgres => {
            ("timezone('utc', now())".to_owned(), "timezone('utc', now()) + interval '1 day'".to_owned())
        }
        Backend::Sqlite => (ago(backend, "0"), "strftime('%Y-%m-%d %H:%M:%f', 'now', '+1 day')".to_owned()),
    };
    let ev: String = diesel::sql_query("SELECT events_id AS line FROM handlers WHERE id = 1")
        .get_result::<PlanLine>(conn.db())?
        .line;
    let entity = catalogue::find(&ev).map_or("clients", |e| e.entity());
    diesel::sql_query("CREATE TEMPORARY TABLE backlog_start AS SELECT COALESCE(MAX(id), 0) AS id FROM events")
        .execute(conn.db())?;
    diesel::sql_query(format!(
        "{with}INSERT INTO events (events_id, entity, object_id, payload, received_at)
         SELECT '{ev}', '{entity}', 'backlog-' || (g % 5000), '{{}}', {now} FROM {from}"
    ))
    .execute(conn.db())?;
    diesel::sql_query(format!(
        "INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts, max_attempts,
                                 first_attempt_done, next_attempt_at, created_at, updated_at)
         SELECT e.id, 1, 'msg_backlog_' || e.id, 0, e.entity, e.object_id, 'pending', e.id % 2, 9, e.id % 2 = 1,
                {tomorrow}, {now}, {now}
         FROM events e WHERE e.id > (SELECT id FROM backlog_start)"
    ))
    .execute(conn.db())?;
    diesel::sql_query("DROP TABLE backlog_start").execute(conn.db())?;
    println!("seeded a backlog of {n} unfinished deliveries on handler 1");
    match conn.db() {
        DbConnection::Postgres(c) => c.batch_execute("ANALYZE"),
        DbConnection::Sqlite(c) => c.batch_execute("ANALYZE"),
    }
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    line: String,
}

/// Prints the plans of the queries behind the pages.
pub fn explain(conn: &mut Read<'_>) -> QueryResult<()> {
    let queries = [
        (
            "handler list page",
            "SELECT * FROM handlers WHERE status IN ('enabled', 'disabled') ORDER BY priority, id LIMIT 50",
        ),
        ("all-handlers log", "SELECT * FROM execution_logs ORDER BY id DESC LIMIT 51"),
        ("log filtered by outcome", "SELECT * FROM execution_logs WHERE outcome = 'timeout' ORDER BY id DESC LIMIT 51"),
        (
            "log filtered by event",
            "SELECT * FROM execution_logs WHERE events_id = 'clients.update' ORDER BY id DESC LIMIT 51",
        ),
        ("a handler's log", "SELECT * FROM execution_logs WHERE handler_id = 42 ORDER BY id DESC LIMIT 51"),
        (
            "timeline attempts",
            "SELECT * FROM execution_logs WHERE object_id = '123' AND entity = 'clients' ORDER BY id DESC LIMIT 1000",
        ),
        (
            "timeline events",
            "SELECT * FROM events WHERE object_id = '123' AND entity = 'clients' ORDER BY id DESC LIMIT 1000",
        ),
        (
            "health: last attempt",
            "SELECT outcome, started_at FROM execution_logs WHERE handler_id = 42 ORDER BY id DESC LIMIT 1",
        ),
        (
            "health: backlog",
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE handler_id = 1 AND state IN ('pending', 'in_flight')
                           ORDER BY handler_id, next_attempt_at LIMIT 10001) AS u) AS unfinished,
                    (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE handler_id = 1 AND state = 'pending' AND attempts > 0 LIMIT 10001) AS r) AS retrying,
                    (SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE handler_id = 1 AND state = 'failed' LIMIT 10001) AS f) AS failed",
        ),
    ];
    for (what, sql) in queries {
        println!("\nplan: {what}\n  {sql}");
        let lines: Vec<PlanLine> = match conn.db() {
            DbConnection::Postgres(_) => diesel::sql_query(format!("EXPLAIN {sql}"))
                .load::<PgPlan>(conn.db())?
                .into_iter()
                .map(|p| PlanLine { line: p.plan })
                .collect(),
            DbConnection::Sqlite(_) => {
                diesel::sql_query(format!("SELECT detail AS line FROM (EXPLAIN QUERY PLAN {sql})"))
                    .load(conn.db())
                    .or_else(|_| {
                        diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                            .load::<SqlitePlan>(conn.db())
                            .map(|v| v.into_iter().map(|p| PlanLine { line: p.detail }).collect())
                    })?
            }
        };
        for l in lines {
            println!("    {}", l.line);
        }
    }
    Ok(())
}

#[derive(QueryableByName)]
struct PgPlan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    plan: String,
}

#[derive(QueryableByName)]
struct SqlitePlan {
    #[diesel(sql_type = Text)]
    detail: String,
}

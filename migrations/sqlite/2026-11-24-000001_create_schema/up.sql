-- The whole schema of provisiond (DESIGN §3). Timestamps are UTC, set from Rust.

CREATE TABLE handlers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    events_id    TEXT    NOT NULL,
    handler_type TEXT    NOT NULL CHECK (handler_type IN ('http', 'script')),
    target       TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('enabled', 'disabled', 'archived')),
    priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 1000000),
    timeout_ms   INTEGER NOT NULL CHECK (timeout_ms BETWEEN 100 AND 300000),
    secret       TEXT    NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);
-- The list (status filter, priority order) and ingestion (enabled handlers of one event).
CREATE INDEX handlers_status_priority ON handlers (status, priority, id);
CREATE INDEX handlers_event_status_priority ON handlers (events_id, status, priority, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    events_id   TEXT    NOT NULL,
    entity      TEXT    NOT NULL,
    object_id   TEXT    NOT NULL,
    payload     TEXT    NOT NULL,
    received_at TIMESTAMP NOT NULL
);
CREATE INDEX events_object ON events (object_id, entity, id);
CREATE INDEX events_received ON events (received_at);

CREATE TABLE idempotency_keys (
    key        TEXT    PRIMARY KEY NOT NULL,
    event_id   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_event ON idempotency_keys (event_id);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    handler_id      INTEGER NOT NULL REFERENCES handlers (id) ON DELETE CASCADE,
    webhook_id      TEXT    NOT NULL,
    priority        INTEGER NOT NULL,
    entity          TEXT    NOT NULL,
    object_id       TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'in_flight', 'succeeded', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    first_attempt_done BOOLEAN NOT NULL DEFAULT FALSE,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_owner     TEXT,
    lease_until     TIMESTAMP,
    created_at      TIMESTAMP NOT NULL,
    updated_at      TIMESTAMP NOT NULL
);
-- Few indexes: every one is written on each claim and each finished attempt.
-- Claiming due work and per-object order per handler (only unfinished rows are
-- indexed, so these stay small however long the history; the second also finds
-- a handler's pending deliveries to cancel); an event's deliveries (the
-- priority chain, and the cascade when events are pruned); retention.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state IN ('pending', 'in_flight');
CREATE INDEX deliveries_object ON deliveries (handler_id, entity, object_id, id) WHERE state IN ('pending', 'in_flight');
CREATE INDEX deliveries_event ON deliveries (event_id);
-- Only failed deliveries by handler (the health figures); pending ones are
-- found through deliveries_object. No general (handler_id, …) index: without
-- statistics, PostgreSQL would pick it for the per-object check of the claim
-- and scan a handler's whole backlog for every candidate.
CREATE INDEX deliveries_failed ON deliveries (handler_id) WHERE state = 'failed';
CREATE INDEX deliveries_finished ON deliveries (updated_at) WHERE state IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE execution_logs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    handler_id      INTEGER NOT NULL,
    event_id        INTEGER NOT NULL,
    events_id       TEXT    NOT NULL,
    entity          TEXT    NOT NULL,
    object_id       TEXT    NOT NULL,
    attempt         INTEGER NOT NULL,
    started_at      TIMESTAMP NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    outcome         TEXT    NOT NULL CHECK (outcome IN ('success', 'http_error', 'timeout', 'connection_error', 'script_error', 'cancelled')),
    status_code     INTEGER,
    request_body    TEXT    NOT NULL,
    request_headers TEXT    NOT NULL,
    response_body   TEXT    NOT NULL,
    error           TEXT,
    next_attempt_at TIMESTAMP
);
-- The all-handlers log (newest first by id), the per-handler log, the filters,
-- the object timeline, an attempt's delivery, retention, the 24 h health figures.
CREATE INDEX execution_logs_handler ON execution_logs (handler_id, id);
CREATE INDEX execution_logs_event_type ON execution_logs (events_id, id);
CREATE INDEX execution_logs_outcome ON execution_logs (outcome, id);
CREATE INDEX execution_logs_object ON execution_logs (object_id, entity, id);
CREATE INDEX execution_logs_delivery ON execution_logs (delivery_id, attempt);
CREATE INDEX execution_logs_started ON execution_logs (started_at);

-- Attempts per handler and hour, kept by the recorder: the handler list's
-- health figures read 24 rows, however busy the handler.
CREATE TABLE handler_stats (
    handler_id INTEGER NOT NULL REFERENCES handlers (id) ON DELETE CASCADE,
    hour       TIMESTAMP NOT NULL,
    attempts   BIGINT  NOT NULL,
    successes  BIGINT  NOT NULL,
    PRIMARY KEY (handler_id, hour)
);

CREATE TABLE admins (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    TIMESTAMP NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);

CREATE TABLE sessions (
    token_hash TEXT    PRIMARY KEY NOT NULL,
    admin_id   INTEGER NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    csrf_token TEXT    NOT NULL,
    flash      TEXT,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);

-- Values the server generates once and keeps (e.g. the API token's hash).
CREATE TABLE settings (
    name       TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

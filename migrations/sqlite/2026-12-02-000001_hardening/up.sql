-- The body an Idempotency-Key was first used with (SHA-256, hex): the same
-- key with another body is refused (422), not answered with the first event.
-- Keys stored before this have none and are answered as before.
ALTER TABLE idempotency_keys ADD COLUMN body_sha256 TEXT;

-- An attempt that started and ended without a result (its process killed,
-- stopped past its grace, its lease taken over) is logged as `interrupted`.
-- SQLite cannot change a CHECK constraint: the table is built again.
CREATE TABLE execution_logs_new (
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
    outcome         TEXT    NOT NULL CHECK (outcome IN ('success', 'http_error', 'timeout', 'connection_error', 'script_error', 'cancelled', 'interrupted')),
    status_code     INTEGER,
    request_body    TEXT    NOT NULL,
    request_headers TEXT    NOT NULL,
    response_body   TEXT    NOT NULL,
    error           TEXT,
    next_attempt_at TIMESTAMP
);
INSERT INTO execution_logs_new SELECT * FROM execution_logs;
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'execution_logs_new', seq FROM sqlite_sequence WHERE name = 'execution_logs'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'execution_logs_new');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'execution_logs'))
    WHERE name = 'execution_logs_new';
DROP TABLE execution_logs;
ALTER TABLE execution_logs_new RENAME TO execution_logs;
CREATE INDEX execution_logs_handler ON execution_logs (handler_id, id);
CREATE INDEX execution_logs_event_type ON execution_logs (events_id, id);
CREATE INDEX execution_logs_outcome ON execution_logs (outcome, id);
CREATE INDEX execution_logs_object ON execution_logs (object_id, entity, id);
CREATE INDEX execution_logs_delivery ON execution_logs (delivery_id, attempt);
CREATE INDEX execution_logs_started ON execution_logs (started_at);

-- Deliveries retrying after a failed attempt, by handler: the handler list
-- counts them (at most 10,001 index entries a handler, whatever its backlog).
CREATE INDEX deliveries_retrying ON deliveries (handler_id) WHERE state = 'pending' AND attempts > 0;

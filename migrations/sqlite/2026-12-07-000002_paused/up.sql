-- DESIGN §8.1: a paused handler's events keep creating deliveries, none is
-- attempted until it is enabled again. SQLite cannot change a CHECK
-- constraint: the table is built again (migrations run with foreign keys off,
-- so dropping the old table leaves the deliveries that reference it alone;
-- they reference the new one by name; checked after the migrations).
CREATE TABLE handlers_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    events_id    TEXT    NOT NULL,
    handler_type TEXT    NOT NULL CHECK (handler_type IN ('http', 'script')),
    target       TEXT    NOT NULL,
    status       TEXT    NOT NULL CHECK (status IN ('enabled', 'disabled', 'archived', 'paused')),
    priority     INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 1000000),
    timeout_ms   INTEGER NOT NULL CHECK (timeout_ms BETWEEN 100 AND 300000),
    secret       TEXT    NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    ordering_group TEXT,
    previous_secret TEXT,
    previous_secret_until TIMESTAMP
);
INSERT INTO handlers_new (id, name, events_id, handler_type, target, status, priority, timeout_ms, secret,
    created_at, updated_at, ordering_group, previous_secret, previous_secret_until)
SELECT id, name, events_id, handler_type, target, status, priority, timeout_ms, secret,
    created_at, updated_at, ordering_group, previous_secret, previous_secret_until
FROM handlers;
-- Ids are never reused (a deleted handler's logs keep its id).
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'handlers_new', seq FROM sqlite_sequence WHERE name = 'handlers'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'handlers_new');
UPDATE sqlite_sequence SET seq = MAX(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'handlers'))
    WHERE name = 'handlers_new';
DROP TABLE handlers;
ALTER TABLE handlers_new RENAME TO handlers;
CREATE INDEX handlers_status_priority ON handlers (status, priority, id);
CREATE INDEX handlers_event_status_priority ON handlers (events_id, status, priority, id);

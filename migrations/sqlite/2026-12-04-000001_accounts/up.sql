-- DESIGN §8.3: accounts with roles, scoped API tokens, the audit log and
-- sign-in throttling. The administrators created so far keep every right.
ALTER TABLE admins ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';

-- Named bearer tokens; only the SHA-256 of a token is stored. `prefix` (the
-- token's first characters) finds the row; the hash is then compared in
-- constant time.
CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT      NOT NULL UNIQUE,
    scope        TEXT      NOT NULL,
    prefix       TEXT      NOT NULL,
    token_hash   TEXT      NOT NULL,
    created_by   TEXT      NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at   TIMESTAMP
);
CREATE INDEX api_tokens_prefix ON api_tokens (prefix);

-- Who changed what, when; kept for its own retention.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TIMESTAMP NOT NULL,
    actor   TEXT      NOT NULL,
    action  TEXT      NOT NULL,
    target  TEXT      NOT NULL,
    changes TEXT      NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- Failed sign-ins, by user name (`user:…`) and by client address (`addr:…`).
CREATE TABLE login_failures (
    id  INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT      NOT NULL,
    at  TIMESTAMP NOT NULL
);
CREATE INDEX login_failures_key ON login_failures (key, at);

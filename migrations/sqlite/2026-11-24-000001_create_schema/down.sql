DROP TABLE settings;
DROP TABLE sessions;
DROP TABLE admins;
DROP TABLE execution_logs;
DROP TABLE deliveries;
DROP TABLE idempotency_keys;
DROP TABLE events;
DROP TABLE handlers;

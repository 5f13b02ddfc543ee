-- DESIGN §8.1: a retry schedule per handler (blank: the global one), and the
-- most attempts it allows, which ingestion gives each new delivery.
ALTER TABLE handlers ADD COLUMN retry_schedule TEXT;
ALTER TABLE handlers ADD COLUMN max_attempts INTEGER;

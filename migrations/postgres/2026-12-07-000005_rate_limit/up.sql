-- DESIGN §8.1: at most so many attempts a second per handler, across every
-- process. The limit in thousandths of an attempt a second (NULL: none), and
-- the earliest start of the next attempt, moved on by the claim (which locks
-- the row) as it hands out start times.
ALTER TABLE handlers ADD COLUMN rate_limit_milli INTEGER;
ALTER TABLE handlers ADD COLUMN rate_next TIMESTAMP;
-- The claim looks at the limited handlers apart from the others.
CREATE INDEX handlers_rate_limited ON handlers (id) WHERE rate_limit_milli IS NOT NULL;

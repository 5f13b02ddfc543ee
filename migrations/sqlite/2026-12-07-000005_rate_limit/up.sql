-- DESIGN §8.1: at most so many attempts a second per handler. The limit in
-- thousandths of an attempt a second (NULL: none), and the earliest start of
-- the next attempt, moved on by the claim as it hands out start times.
ALTER TABLE handlers ADD COLUMN rate_limit_milli INTEGER;
ALTER TABLE handlers ADD COLUMN rate_next TIMESTAMP;

DROP INDEX deliveries_due_by_handler;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id) WHERE state IN ('pending', 'in_flight');

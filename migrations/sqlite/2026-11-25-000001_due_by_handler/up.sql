-- Due work by handler. A claim looks at each handler with room on its own, in
-- due order; a handler at its limit (an endpoint that hangs, with a backlog
-- behind it) is not looked at, so its backlog costs the other handlers'
-- claims nothing. The index it replaces ordered all handlers' due work
-- together, and a claim stepped over every row of a handler at its limit.
DROP INDEX deliveries_due;
CREATE INDEX deliveries_due_by_handler ON deliveries (handler_id, next_attempt_at, id) WHERE state IN ('pending', 'in_flight');

-- DESIGN §4.4: per-object order holds within an ordering group — the
-- handler's `ordering_group` when set, else its target. Each delivery keeps
-- the group it was created in (`ordering_key`), so the claim's per-object
-- check is one probe of `deliveries_object` by group, entity and object,
-- ordered by event (the order received): deliveries of one event never hold
-- each other up here (the priority chain orders them).
ALTER TABLE handlers ADD COLUMN ordering_group TEXT;
ALTER TABLE deliveries ADD COLUMN ordering_key TEXT NOT NULL DEFAULT '';
UPDATE deliveries SET ordering_key = COALESCE((SELECT h.target FROM handlers h WHERE h.id = deliveries.handler_id), '');
DROP INDEX deliveries_object;
CREATE INDEX deliveries_object ON deliveries (ordering_key, entity, object_id, event_id) WHERE state IN ('pending', 'in_flight');

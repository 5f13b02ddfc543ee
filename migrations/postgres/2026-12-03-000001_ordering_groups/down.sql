DROP INDEX deliveries_object;
CREATE INDEX deliveries_object ON deliveries (handler_id, entity, object_id, id) WHERE state IN ('pending', 'in_flight');
ALTER TABLE deliveries DROP COLUMN ordering_key;
ALTER TABLE handlers DROP COLUMN ordering_group;

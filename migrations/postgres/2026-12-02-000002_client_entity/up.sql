-- DESIGN §3.1: `clients.custom_fields.update` is about the client (its
-- object_id is the client's id), so its rows take the entity `clients`, and
-- the client's timeline and per-object order include it.
UPDATE events SET entity = 'clients' WHERE entity = 'clients.custom_fields';
UPDATE deliveries SET entity = 'clients' WHERE entity = 'clients.custom_fields';
UPDATE execution_logs SET entity = 'clients' WHERE entity = 'clients.custom_fields';

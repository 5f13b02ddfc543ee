UPDATE execution_logs SET entity = 'clients.custom_fields' WHERE events_id = 'clients.custom_fields.update';
UPDATE deliveries SET entity = 'clients.custom_fields'
WHERE event_id IN (SELECT id FROM events WHERE events_id = 'clients.custom_fields.update');
UPDATE events SET entity = 'clients.custom_fields' WHERE events_id = 'clients.custom_fields.update';

SELECT d.id, h.status IN ('enabled', 'paused') AS enabled
FROM deliveries d JOIN handlers h ON h.id = d.handler_id
WHERE d.id IN (SELECT value FROM json_each($1))

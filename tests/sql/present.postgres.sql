SELECT d.id, h.status IN ('enabled', 'paused') AS enabled
FROM deliveries d JOIN handlers h ON h.id = d.handler_id
WHERE d.id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($1::jsonb)))

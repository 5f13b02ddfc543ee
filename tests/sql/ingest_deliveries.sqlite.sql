/* $1 the webhook-id prefix, $2 max attempts, $3 PARKED, $4 received at, $5 the events, a JSON array */
INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                        max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
SELECT e.id, h.id, $1 || e.id || '_' || h.id, h.priority, e.entity, e.object_id, 'pending', 0,
       COALESCE(h.max_attempts, $2), h.status = 'paused',
       CASE WHEN h.status = 'enabled' AND EXISTS (
         SELECT 1 FROM handlers b
         WHERE b.events_id = h.events_id AND b.status = 'enabled'
           AND (b.priority < h.priority OR (b.priority = h.priority AND b.id < h.id)))
       THEN $3 ELSE $4 END,
       $4, $4, COALESCE(h.ordering_group, h.target)
FROM events e JOIN handlers h ON h.events_id = e.events_id AND h.status IN ('enabled', 'paused')
WHERE e.id IN (SELECT value FROM json_each($5))
RETURNING event_id

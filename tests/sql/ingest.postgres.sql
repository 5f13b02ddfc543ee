/* $1 received at, $2 the events, a JSON array, $3 the webhook-id prefix, $4 max attempts, $5 PARKED */
WITH new_events AS (
  INSERT INTO events (events_id, entity, object_id, payload, received_at)
  SELECT x.e ->> 'events_id', x.e ->> 'entity', x.e ->> 'object_id', x.e ->> 'payload', $1
  FROM jsonb_array_elements($2::jsonb) WITH ORDINALITY AS x(e, n)
  ORDER BY x.n
  RETURNING id, events_id, entity, object_id
), new_deliveries AS (
  INSERT INTO deliveries (event_id, handler_id, webhook_id, priority, entity, object_id, state, attempts,
                          max_attempts, first_attempt_done, next_attempt_at, created_at, updated_at, ordering_key)
  SELECT e.id, h.id, $3 || e.id || '_' || h.id, h.priority, e.entity, e.object_id, 'pending', 0,
         COALESCE(h.max_attempts, $4), h.status = 'paused',
         CASE WHEN h.status = 'enabled' AND EXISTS (
           SELECT 1 FROM handlers b
           WHERE b.events_id = h.events_id AND b.status = 'enabled'
             AND (b.priority < h.priority OR (b.priority = h.priority AND b.id < h.id)))
         THEN $5 ELSE $1 END,
         $1, $1, COALESCE(h.ordering_group, h.target)
  FROM new_events e JOIN handlers h ON h.events_id = e.events_id AND h.status IN ('enabled', 'paused')
  FOR KEY SHARE OF h
  RETURNING event_id
)
SELECT e.id, COUNT(d.event_id) AS deliveries
FROM new_events e LEFT JOIN new_deliveries d ON d.event_id = e.id
GROUP BY e.id
ORDER BY e.id

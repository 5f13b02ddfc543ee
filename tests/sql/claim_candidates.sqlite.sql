/* $1 handler, $2 now, $3 its room */
SELECT c.id, c.handler_id, c.next_attempt_at, c.state = 'in_flight' AS lease_ran_out
FROM deliveries c
WHERE c.handler_id = $1 AND c.state IN ('pending', 'in_flight') AND c.next_attempt_at <= $2
  AND NOT EXISTS (
    SELECT 1 FROM deliveries p
    WHERE p.ordering_key = c.ordering_key AND p.entity = c.entity AND p.object_id = c.object_id
      AND p.event_id < c.event_id AND p.state IN ('pending', 'in_flight'))
  AND (c.first_attempt_done OR NOT EXISTS (
    SELECT 1 FROM deliveries q
    WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
      AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id))))
ORDER BY c.next_attempt_at, c.id
LIMIT $3

/* $1 now, $2 PARKED */
UPDATE deliveries SET next_attempt_at = $1
WHERE id IN (
  SELECT c.id FROM deliveries c
  WHERE c.state = 'pending' AND NOT c.first_attempt_done AND c.next_attempt_at = $2
    AND NOT EXISTS (
      SELECT 1 FROM deliveries q
      WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
        AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id)))
  FOR UPDATE SKIP LOCKED)

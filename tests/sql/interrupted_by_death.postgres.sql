/* $1 the application name's prefix */
INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
    d.updated_at, 0, 'interrupted', NULL, '', '{}', '',
    'its process ended before a result was recorded (killed?); attempted again', NULL
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.state = 'in_flight' AND d.id IN (
  SELECT id FROM deliveries d
  WHERE d.state = 'in_flight' AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $1 || d.lease_owner)
  FOR UPDATE SKIP LOCKED)

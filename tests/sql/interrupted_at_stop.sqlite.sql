/* $1 owner */
INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
    started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
    d.updated_at, 0, 'interrupted', NULL, '', '{}', '', 'still running at the end of the shutdown grace; attempted again', NULL
FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE d.state = 'in_flight' AND d.lease_owner = $1

/* $1 the leased ids, a JSON array */
SELECT d.id, d.event_id, d.handler_id, d.webhook_id, d.entity, d.object_id, d.attempts,
    d.max_attempts, d.first_attempt_done, e.events_id, e.payload, h.handler_type, h.target, h.secret,
    h.previous_secret, h.previous_secret_until, h.timeout_ms, h.status AS handler_status, h.retry_schedule,
    h.rate_limit_milli, NULL AS not_before, h.failures_in_a_row > 0 AS handler_failing
FROM deliveries d JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
WHERE d.id IN (SELECT value FROM json_each($1))
ORDER BY d.id

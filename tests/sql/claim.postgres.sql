/* $1 owner, $2 the lease's end, $3 now, $4 limit, $5 per handler, $6 busy, $7 the rate look-ahead's end */
WITH paced AS MATERIALIZED (
  SELECT h.id, h.rate_limit_milli, GREATEST(COALESCE(h.rate_next, $3), $3) AS start
  FROM handlers h
  WHERE h.rate_limit_milli IS NOT NULL AND h.status <> 'paused' AND (h.hold_until IS NULL OR h.hold_until <= $3)
    AND (h.rate_next IS NULL OR h.rate_next < $7)
    AND $5 - COALESCE(($6::jsonb ->> h.id::text)::bigint, 0) > 0
    AND (SELECT 1 FROM deliveries u
         WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= $3
         ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1
  FOR NO KEY UPDATE SKIP LOCKED
), picked AS MATERIALIZED (
  SELECT id, state AS was FROM deliveries
  WHERE id = ANY(ARRAY(
      SELECT e.id
      FROM (
        SELECT h.id AS id, LEAST($4, $5 - COALESCE(($6::jsonb ->> h.id::text)::bigint, 0)) AS room
        FROM handlers h
        WHERE h.rate_limit_milli IS NULL AND h.status <> 'paused' AND (h.hold_until IS NULL OR h.hold_until <= $3)
          AND $5 - COALESCE(($6::jsonb ->> h.id::text)::bigint, 0) > 0
          AND (SELECT 1 FROM deliveries u
               WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= $3
               ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1
        UNION ALL
        SELECT p.id, LEAST($4, $5 - COALESCE(($6::jsonb ->> p.id::text)::bigint, 0),
                     CEIL(EXTRACT(EPOCH FROM ($7 - p.start)) * p.rate_limit_milli / 1000)::bigint)
        FROM paced p
      ) AS r CROSS JOIN LATERAL (
        SELECT c.id, c.next_attempt_at
        FROM deliveries c
        WHERE c.handler_id = r.id AND c.state IN ('pending', 'in_flight') AND c.next_attempt_at <= $3
          AND NOT EXISTS (
            SELECT 1 FROM deliveries p
            WHERE p.ordering_key = c.ordering_key AND p.entity = c.entity AND p.object_id = c.object_id
              AND p.event_id < c.event_id AND p.state IN ('pending', 'in_flight'))
          AND (c.first_attempt_done OR NOT EXISTS (
            SELECT 1 FROM deliveries q
            WHERE q.event_id = c.event_id AND q.state IN ('pending', 'in_flight') AND NOT q.first_attempt_done
              AND (q.priority < c.priority OR (q.priority = c.priority AND q.handler_id < c.handler_id))))
        ORDER BY c.next_attempt_at, c.id
        LIMIT r.room
      ) AS e
      ORDER BY e.next_attempt_at, e.id
      LIMIT $4))
    AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE deliveries d SET state = 'in_flight', attempts = d.attempts + 1, lease_owner = $1, lease_until = $2,
      next_attempt_at = $2, updated_at = $3
  FROM picked p WHERE d.id = p.id
  RETURNING d.id, d.attempts, d.handler_id
), interrupted AS (
  INSERT INTO execution_logs (delivery_id, handler_id, event_id, events_id, entity, object_id, attempt,
      started_at, duration_ms, outcome, status_code, request_body, request_headers, response_body, error, next_attempt_at)
  SELECT d.id, d.handler_id, d.event_id, e.events_id, d.entity, d.object_id, d.attempts,
      d.updated_at, 0, 'interrupted', NULL, '', '{}', '',
      'its lease ran out before a result was recorded (its process was killed or stopped answering); attempted again', NULL
  FROM picked p JOIN deliveries d ON d.id = p.id JOIN events e ON e.id = d.event_id
  WHERE p.was = 'in_flight'
), spaced AS (
  UPDATE handlers h SET rate_next = p.start + make_interval(secs => (n.k * 1000.0 / p.rate_limit_milli)::float8)
  FROM paced p JOIN (SELECT handler_id, COUNT(*) AS k FROM claimed GROUP BY handler_id) AS n ON n.handler_id = p.id
  WHERE h.id = p.id
)
SELECT d.id, d.event_id, d.handler_id, d.webhook_id, d.entity, d.object_id, c.attempts AS attempts,
    d.max_attempts, d.first_attempt_done, e.events_id, e.payload, h.handler_type, h.target, h.secret,
    h.previous_secret, h.previous_secret_until, h.timeout_ms, h.status AS handler_status, h.retry_schedule,
    h.rate_limit_milli, p.start AS not_before, h.failures_in_a_row > 0 AS handler_failing
FROM claimed c JOIN deliveries d ON d.id = c.id JOIN events e ON e.id = d.event_id JOIN handlers h ON h.id = d.handler_id
  LEFT JOIN paced p ON p.id = d.handler_id
WHERE set_config('synchronous_commit', 'off', true) = 'off'
ORDER BY d.id

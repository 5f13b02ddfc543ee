/* ?1 limit, ?2 per handler, ?3 busy, ?4 now, ?5 the rate look-ahead's end */
SELECT r.id, r.room, r.rate_limit_milli, r.rate_next,
    (SELECT u.next_attempt_at FROM deliveries u
     WHERE u.handler_id = r.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= ?4
     ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) AS first_due
FROM (
  SELECT h.id AS id, MIN(?1, ?2 - COALESCE((SELECT value FROM json_each(?3) WHERE key = CAST(h.id AS TEXT)), 0)) AS room,
         h.rate_limit_milli, h.rate_next
  FROM handlers h
  WHERE h.status <> 'paused' AND (h.hold_until IS NULL OR h.hold_until <= ?4)
    AND (h.rate_limit_milli IS NULL OR h.rate_next IS NULL OR h.rate_next < ?5)
    AND ?2 - COALESCE((SELECT value FROM json_each(?3) WHERE key = CAST(h.id AS TEXT)), 0) > 0
    AND (SELECT 1 FROM deliveries u
         WHERE u.handler_id = h.id AND u.state IN ('pending', 'in_flight') AND u.next_attempt_at <= ?4
         ORDER BY u.handler_id, u.next_attempt_at, u.id LIMIT 1) = 1
) AS r

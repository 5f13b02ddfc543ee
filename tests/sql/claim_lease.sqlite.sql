/* $1 owner, $2 the lease's end, $3 now, $4 the picked ids, a JSON array */
UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, lease_owner = $1, lease_until = $2,
    next_attempt_at = $2, updated_at = $3
WHERE id IN (
  SELECT id FROM deliveries
  WHERE id IN (SELECT value FROM json_each($4)) AND state IN ('pending', 'in_flight') AND next_attempt_at <= $3)
RETURNING id

/* $1 now, $2 the application name's prefix */
UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until = NULL, next_attempt_at = $1,
    updated_at = $1
WHERE id IN (
  SELECT id FROM deliveries d
  WHERE d.state = 'in_flight' AND NOT EXISTS (
    SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $2 || d.lease_owner)
  FOR UPDATE SKIP LOCKED)

UPDATE deliveries SET lease_until = $1, next_attempt_at = $1
WHERE id IN (SELECT value FROM json_each($2)) AND lease_owner = $3 AND state = 'in_flight'

UPDATE deliveries SET state = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,
    next_attempt_at = $1, updated_at = $1
WHERE id IN (SELECT value FROM json_each($2)) AND lease_owner = $3 AND state = 'in_flight'

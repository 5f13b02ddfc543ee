UPDATE deliveries SET state = $1, first_attempt_done = TRUE, next_attempt_at = $2,
    lease_owner = NULL, lease_until = NULL, updated_at = $2
WHERE id IN (SELECT value FROM json_each($3)) AND lease_owner = $4 AND state = 'in_flight' AND attempts = $5

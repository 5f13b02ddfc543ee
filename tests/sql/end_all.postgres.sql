UPDATE deliveries SET state = $1, first_attempt_done = TRUE, next_attempt_at = $2,
    lease_owner = NULL, lease_until = NULL, updated_at = $2
WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($3::jsonb)))
  AND lease_owner = $4 AND state = 'in_flight' AND attempts = $5

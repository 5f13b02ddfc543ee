UPDATE deliveries SET state = 'pending', attempts = attempts - 1, lease_owner = NULL, lease_until = NULL,
    next_attempt_at = $1, updated_at = $1
WHERE id = ANY(ARRAY(SELECT value::bigint FROM jsonb_array_elements_text($2::jsonb)))
  AND lease_owner = $3 AND state = 'in_flight'

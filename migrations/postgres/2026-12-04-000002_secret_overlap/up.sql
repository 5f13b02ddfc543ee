-- A rotated secret goes on signing beside the new one until previous_secret_until
-- (PROVISIOND_SECRET_OVERLAP), so an endpoint can switch without a window of refusals.
ALTER TABLE handlers ADD COLUMN previous_secret TEXT;
ALTER TABLE handlers ADD COLUMN previous_secret_until TIMESTAMP;

-- DESIGN §8.2: an answer 429, 502, 503 or 504 with Retry-After holds back
-- every attempt of its handler until then (capped by PROVISIOND_RETRY_AFTER_MAX).
ALTER TABLE handlers ADD COLUMN hold_until TIMESTAMP;

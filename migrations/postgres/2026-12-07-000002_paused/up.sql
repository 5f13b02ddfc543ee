-- DESIGN §8.1: a paused handler's events keep creating deliveries, none is
-- attempted until it is enabled again.
ALTER TABLE handlers DROP CONSTRAINT handlers_status_check;
ALTER TABLE handlers ADD CONSTRAINT handlers_status_check
    CHECK (status IN ('enabled', 'disabled', 'archived', 'paused'));

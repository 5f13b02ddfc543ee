ALTER TABLE handlers DROP COLUMN hold_until;

ALTER TABLE handlers DROP COLUMN previous_secret_until;
ALTER TABLE handlers DROP COLUMN previous_secret;

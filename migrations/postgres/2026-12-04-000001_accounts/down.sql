DROP TABLE login_failures;
DROP TABLE audit_log;
DROP TABLE api_tokens;
ALTER TABLE admins DROP COLUMN role;

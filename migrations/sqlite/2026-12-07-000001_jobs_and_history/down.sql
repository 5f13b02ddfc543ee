DROP TABLE deleted_handlers;
ALTER TABLE execution_logs DROP COLUMN test;
ALTER TABLE execution_logs DROP COLUMN target;
DROP TABLE bulk_jobs;

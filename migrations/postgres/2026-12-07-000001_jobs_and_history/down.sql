DROP TABLE deleted_handlers;
DELETE FROM execution_logs WHERE delivery_id NOT IN (SELECT id FROM deliveries);
ALTER TABLE execution_logs DROP COLUMN test;
ALTER TABLE execution_logs DROP COLUMN target;
ALTER TABLE execution_logs ADD CONSTRAINT execution_logs_delivery_id_fkey
    FOREIGN KEY (delivery_id) REFERENCES deliveries (id) ON DELETE CASCADE;
DROP TABLE bulk_jobs;

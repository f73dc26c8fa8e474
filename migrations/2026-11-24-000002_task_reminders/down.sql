DROP INDEX tasks_project_due_idx;
DROP INDEX jobs_pending_key_idx;
ALTER TABLE jobs DROP COLUMN key;
UPDATE jobs SET status = 'failed' WHERE status = 'cancelled';
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN ('pending', 'done', 'failed'));

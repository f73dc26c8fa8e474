-- Jobs can be cancelled (a task's reminder when its due date changes or it is completed), and
-- carry a key naming what they are about, so they can be found without reading payloads.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
  CHECK (status IN ('pending', 'done', 'failed', 'cancelled'));
ALTER TABLE jobs ADD COLUMN key TEXT;
CREATE INDEX jobs_pending_key_idx ON jobs (key) WHERE status = 'pending';

-- Task listings filter by status and due date within a project.
CREATE INDEX tasks_project_due_idx ON tasks (project_id, due_date, id);

DROP INDEX jobs_running_idx;
UPDATE jobs SET status = 'pending' WHERE status = 'running';
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
  CHECK (status IN ('pending', 'done', 'failed', 'cancelled'));
DROP TABLE push_deliveries;
DROP TABLE push_devices;
DROP TABLE notification_emails;
DROP TABLE notification_mutes;
DROP TABLE notification_defaults;
DROP TABLE notification_settings;
DROP TABLE notification_marks;
DROP TABLE notifications;

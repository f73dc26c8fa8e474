ALTER TABLE conversation_members DROP COLUMN notified_seq;
DROP INDEX jobs_pending_kind_key_idx;

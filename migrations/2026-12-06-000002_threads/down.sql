DROP TABLE thread_follows;
DROP INDEX messages_thread_idx;
ALTER TABLE messages DROP COLUMN in_conversation;
ALTER TABLE messages DROP COLUMN thread_root_id;

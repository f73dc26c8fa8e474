DROP INDEX conversation_events_message_idx;
ALTER TABLE conversation_events DROP COLUMN message_id;

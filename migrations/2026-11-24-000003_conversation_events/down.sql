DROP TABLE conversation_events;
ALTER TABLE conversation_members DROP COLUMN joined_event_seq;
ALTER TABLE conversations DROP COLUMN last_event_seq;

ALTER TABLE messages DROP COLUMN edited_by;
DROP TABLE message_versions;
DROP TABLE saved_messages;
DROP TABLE message_pins;
DROP TABLE message_reactions;

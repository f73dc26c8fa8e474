-- The message an event is about, so that an edit or a delete can redact the earlier versions
-- of that message in the log: a replay never serves a deleted or replaced body.
ALTER TABLE conversation_events ADD COLUMN message_id UUID;
UPDATE conversation_events SET message_id = (body->'message'->>'id')::uuid
  WHERE body ? 'message';
CREATE INDEX conversation_events_message_idx ON conversation_events (conversation_id, message_id)
  WHERE message_id IS NOT NULL;

-- Redact what was already leaked: every earlier event of a message carries its newest
-- version (the tombstone of a deleted message, the last edit of an edited one).
UPDATE conversation_events e
SET body = jsonb_set(
      CASE WHEN e.body ? 'attachment_ids'
           THEN jsonb_set(e.body, '{attachment_ids}', COALESCE(latest.body->'attachment_ids', '[]'))
           ELSE e.body END,
      '{message}', latest.body->'message')
FROM (
  SELECT DISTINCT ON (conversation_id, message_id) conversation_id, message_id, seq, body
  FROM conversation_events WHERE message_id IS NOT NULL
  ORDER BY conversation_id, message_id, seq DESC
) latest
WHERE e.conversation_id = latest.conversation_id AND e.message_id = latest.message_id
  AND e.seq < latest.seq;

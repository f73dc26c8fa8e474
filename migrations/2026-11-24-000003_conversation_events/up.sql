-- The durable event log of each conversation: every persisted change (messages created,
-- edited, deleted; membership; read receipts) gets a gap-free per-conversation event sequence
-- number in the transaction that makes the change. Streams resume from these positions.
ALTER TABLE conversations ADD COLUMN last_event_seq BIGINT NOT NULL DEFAULT 0;
-- A member's view of a conversation starts at the event that added them.
ALTER TABLE conversation_members ADD COLUMN joined_event_seq BIGINT NOT NULL DEFAULT 0;

CREATE TABLE conversation_events (
  conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  seq BIGINT NOT NULL,
  body JSONB NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (conversation_id, seq)
);

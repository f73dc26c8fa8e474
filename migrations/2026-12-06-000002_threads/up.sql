-- Threads (issue 36): a reply names its root (a message of the same conversation that is not
-- itself a reply); a reply shows in the conversation too only when its sender asked.
ALTER TABLE messages ADD COLUMN thread_root_id UUID REFERENCES messages(id);
ALTER TABLE messages ADD COLUMN in_conversation BOOLEAN NOT NULL DEFAULT TRUE;
CREATE INDEX messages_thread_idx ON messages (thread_root_id, seq) WHERE thread_root_id IS NOT NULL;

-- Who follows which thread, with their read position in it.
CREATE TABLE thread_follows (
  root_id UUID NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  last_read_seq BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (root_id, user_id)
);
CREATE INDEX thread_follows_user_idx ON thread_follows (user_id);

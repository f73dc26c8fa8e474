-- Reactions, pins, saved messages and edit history (issue 36). Each goes with its message:
-- deleting a message deletes them in the same transaction (and the cascades cover a
-- conversation's deletion).

CREATE TABLE message_reactions (
  message_id UUID NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  emoji TEXT NOT NULL,
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (message_id, emoji, user_id)
);

CREATE TABLE message_pins (
  message_id UUID PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
  conversation_id UUID NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  pinned_by UUID NOT NULL REFERENCES users(id),
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX message_pins_conversation_idx ON message_pins (conversation_id, created_at DESC);

CREATE TABLE saved_messages (
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  message_id UUID NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, message_id)
);
CREATE INDEX saved_messages_newest_idx ON saved_messages (user_id, created_at DESC, message_id);

-- The earlier versions of edited messages: version 1 is the message as sent; each edit stores
-- the version it replaced, with who wrote it and when.
CREATE TABLE message_versions (
  message_id UUID NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  version INT NOT NULL,
  content JSONB NOT NULL,
  body_text TEXT NOT NULL,
  author_id UUID NOT NULL REFERENCES users(id),
  written_at TIMESTAMPTZ NOT NULL,
  PRIMARY KEY (message_id, version)
);
-- Who wrote the current version (empty until the first edit: the sender).
ALTER TABLE messages ADD COLUMN edited_by UUID REFERENCES users(id);

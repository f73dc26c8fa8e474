-- The AI assistant: private chats (question and answer turns), token usage per user and
-- day, the system account the assistant's conversation answers are sent from, and the claim
-- that keeps one answer at a time per conversation.
CREATE TABLE ai_chats (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  title TEXT NOT NULL,
  model TEXT NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ai_chats_user_idx ON ai_chats (user_id, updated_at DESC, id);

CREATE TABLE ai_chat_turns (
  id BIGSERIAL PRIMARY KEY,
  chat_id UUID NOT NULL REFERENCES ai_chats(id) ON DELETE CASCADE,
  role TEXT NOT NULL CONSTRAINT ai_chat_turns_role_check CHECK (role IN ('system', 'user', 'assistant')),
  content TEXT NOT NULL,
  model TEXT,
  finish_reason TEXT,
  prompt_tokens BIGINT,
  completion_tokens BIGINT,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ai_chat_turns_chat_idx ON ai_chat_turns (chat_id, id);

CREATE TABLE ai_usage (
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  day DATE NOT NULL,
  requests BIGINT NOT NULL DEFAULT 0,
  prompt_tokens BIGINT NOT NULL DEFAULT 0,
  completion_tokens BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (user_id, day)
);
CREATE INDEX ai_usage_day_idx ON ai_usage (day DESC, user_id);

-- Until when the assistant is writing an answer in the conversation (a crashed instance's
-- claim lapses by itself).
ALTER TABLE conversations ADD COLUMN assistant_busy_until TIMESTAMPTZ;

-- The assistant's account: it cannot sign in (no password hash verifies) and is disabled,
-- so it never appears as someone to add or message.
INSERT INTO users (id, email, display_name, password_hash, role_id, disabled_at)
SELECT '00000000-0000-4000-8000-00000000a1a1', 'assistant@epop.invalid', 'Assistant', '!',
       (SELECT id FROM roles WHERE name = 'USER'), now()
ON CONFLICT DO NOTHING;

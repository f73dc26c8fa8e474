-- At most one pending job per key: a busy conversation queues one digest per member, not one
-- email per message.
CREATE UNIQUE INDEX jobs_pending_kind_key_idx ON jobs (kind, key) WHERE status = 'pending' AND key IS NOT NULL;
-- The newest message a member was already told about by email.
ALTER TABLE conversation_members ADD COLUMN notified_seq BIGINT NOT NULL DEFAULT 0;

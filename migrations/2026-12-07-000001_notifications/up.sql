-- Notifications (issue 37): the inbox of each user, their preferences and mutes, the admin's
-- default, the push devices, and which device was sent which notification.

-- One notable event for one user. `topic` groups what collapses into one push (a
-- conversation or a project); `pushed_at` is set once the push step has dealt with it (sent,
-- or suppressed).
CREATE TABLE notifications (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  topic UUID NOT NULL,
  conversation_id UUID REFERENCES conversations(id) ON DELETE CASCADE,
  message_id UUID REFERENCES messages(id) ON DELETE CASCADE,
  message_seq BIGINT,
  project_id UUID REFERENCES projects(id) ON DELETE CASCADE,
  task_id UUID REFERENCES tasks(id) ON DELETE CASCADE,
  actor_id UUID REFERENCES users(id) ON DELETE SET NULL,
  title TEXT NOT NULL,
  body TEXT NOT NULL,
  in_app BOOLEAN NOT NULL DEFAULT TRUE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  read_at TIMESTAMPTZ,
  pushed_at TIMESTAMPTZ
);
-- The inbox, newest first.
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC, id) WHERE in_app;
-- Unread counts, and what a read of a conversation clears.
CREATE INDEX notifications_unread_idx ON notifications (user_id, conversation_id, message_seq) WHERE read_at IS NULL;
-- At most one notification of a kind per user and message (a job that runs again adds none).
CREATE UNIQUE INDEX notifications_message_once ON notifications (user_id, message_id, kind) WHERE message_id IS NOT NULL;
-- What the push step has still to deal with, by topic.
CREATE INDEX notifications_unpushed_idx ON notifications (user_id, topic) WHERE pushed_at IS NULL;

-- How far each conversation's events were turned into notifications: the conversations of
-- before this migration start at their newest event (their history notifies nobody); a
-- conversation without a mark starts at its first.
CREATE TABLE notification_marks (
  conversation_id UUID PRIMARY KEY REFERENCES conversations(id) ON DELETE CASCADE,
  seq BIGINT NOT NULL DEFAULT 0
);
INSERT INTO notification_marks (conversation_id, seq) SELECT id, last_event_seq FROM conversations;

-- A user's preferences (absent: the admin's default). `channels` maps a kind to the
-- channels it notifies on, e.g. {"mention": ["in_app", "push"]}; a kind it does not name
-- follows the default.
CREATE TABLE notification_settings (
  user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  channels JSONB NOT NULL DEFAULT '{}',
  previews BOOLEAN NOT NULL DEFAULT TRUE,
  time_zone TEXT NOT NULL DEFAULT 'UTC',
  -- Do-not-disturb, as minutes after midnight in `time_zone`; may wrap past midnight.
  dnd_start SMALLINT CHECK (dnd_start BETWEEN 0 AND 1439),
  dnd_end SMALLINT CHECK (dnd_end BETWEEN 0 AND 1439),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK ((dnd_start IS NULL) = (dnd_end IS NULL))
);

-- The admin's default for users without their own settings (one row at most).
CREATE TABLE notification_defaults (
  id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
  channels JSONB NOT NULL DEFAULT '{}',
  previews BOOLEAN NOT NULL DEFAULT TRUE,
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A muted conversation or project (until a time, or for good).
CREATE TABLE notification_mutes (
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  target_id UUID NOT NULL,
  until TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, target_id)
);

-- Up to when each user's notifications were told by email (the digest lists what is newer).
CREATE TABLE notification_emails (
  user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  told_up_to TIMESTAMPTZ NOT NULL
);

-- A device push notifications go to: a browser's Web Push subscription, an FCM registration
-- token or an APNs device token.
CREATE TABLE push_devices (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  platform TEXT NOT NULL CHECK (platform IN ('web', 'fcm', 'apns')),
  address TEXT NOT NULL,
  p256dh TEXT,
  auth TEXT,
  name TEXT NOT NULL DEFAULT '',
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_sent_at TIMESTAMPTZ,
  CONSTRAINT push_devices_address_key UNIQUE (platform, address),
  CHECK (platform <> 'web' OR (p256dh IS NOT NULL AND auth IS NOT NULL))
);
CREATE INDEX push_devices_user_idx ON push_devices (user_id);

-- Which device was handed which notification: a retried push job skips them.
CREATE TABLE push_deliveries (
  notification_id UUID NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
  device_id UUID NOT NULL REFERENCES push_devices(id) ON DELETE CASCADE,
  sent_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (notification_id, device_id)
);

-- A job being run no longer absorbs new work of its key: it is 'running' while claimed, so
-- a send that queues the job meanwhile queues another (see src/db/jobs.rs).
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check
  CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled'));
CREATE INDEX jobs_running_idx ON jobs (locked_until) WHERE status = 'running';

-- A session (refresh-token family) ends at a fixed moment however often it is refreshed:
-- every token of the family carries that moment, and none expires after it. Sessions that
-- already exist get the default lifetime from now.
ALTER TABLE refresh_tokens
  ADD COLUMN session_expires_at TIMESTAMPTZ NOT NULL DEFAULT now() + interval '90 days';

-- Recent jobs by kind and key: a password reset is throttled per address by looking for one
-- created within the last minute, whatever its status.
CREATE INDEX jobs_kind_key_created_idx ON jobs (kind, key, created_at) WHERE key IS NOT NULL;

-- The keys access tokens are signed with, shared by every instance of one database. The
-- newest is the one that signs; a rotated-out key keeps verifying until `retired_at` plus a
-- token's lifetime, so tokens it signed stay valid until they expire.
CREATE TABLE signing_keys (
    kid text PRIMARY KEY,
    secret bytea NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz
);
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys ((retired_at IS NULL)) WHERE retired_at IS NULL;

-- Secrets other keys are derived from (HMAC of stream cursors and local file URLs): created
-- once, never rotated with the signing keys.
CREATE TABLE server_secrets (
    name text PRIMARY KEY,
    secret bytea NOT NULL CHECK (octet_length(secret) >= 32),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Sessions a user can see and end, TOTP second factors with recovery codes, short-lived
-- sign-in challenges, the sign-in policy, and single sign-on (OpenID Connect) state and
-- linked identities.

-- One row per session family of refresh_tokens (its id is the family id): what a user sees
-- of their signed-in devices. A session is open while none of its tokens is revoked and
-- expires_at is ahead.
CREATE TABLE sessions (
  id UUID PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_used_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at TIMESTAMPTZ NOT NULL,
  user_agent TEXT NOT NULL DEFAULT '',
  client_ip TEXT,
  method TEXT NOT NULL DEFAULT 'password'
);
CREATE INDEX sessions_user ON sessions (user_id, last_used_at DESC);

-- Sessions signed in before this table existed.
INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at)
SELECT family_id, user_id, min(created_at), max(created_at), max(session_expires_at)
FROM refresh_tokens GROUP BY family_id, user_id
ON CONFLICT DO NOTHING;

-- A user's TOTP authenticator (RFC 6238); confirmed_at is null while it is being added.
-- last_step is the last time step whose code was accepted: a code works once.
CREATE TABLE user_totp (
  user_id UUID PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
  secret BYTEA NOT NULL,
  confirmed_at TIMESTAMPTZ,
  last_step BIGINT NOT NULL DEFAULT 0,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Single-use recovery codes, as SHA-256 hashes (the codes are 80 random bits).
CREATE TABLE recovery_codes (
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  code_hash BYTEA NOT NULL,
  used_at TIMESTAMPTZ,
  PRIMARY KEY (user_id, code_hash)
);

-- The step between a right password and the second factor: no token is issued until it is
-- passed. purpose: 'second_factor' or 'enroll'.
CREATE TABLE sign_in_challenges (
  token_hash BYTEA PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  purpose TEXT NOT NULL CHECK (purpose IN ('second_factor', 'enroll')),
  -- How the first step was passed: 'password' or 'oidc:<provider>'.
  first_factor TEXT NOT NULL DEFAULT 'password',
  -- A single sign-on's identity, linked (and its role applied) only once the second step
  -- passes: {"version": 1, "provider", "subject", "email", "email_verified", "name", "groups"}.
  pending JSONB,
  attempts INT NOT NULL DEFAULT 0,
  expires_at TIMESTAMPTZ NOT NULL,
  used_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_challenges_expiry ON sign_in_challenges (expires_at);

-- Who must sign in with a second factor (one row at most).
CREATE TABLE sign_in_policy (
  id BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
  require_second_factor TEXT NOT NULL DEFAULT 'none'
    CHECK (require_second_factor IN ('none', 'admins', 'everyone')),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- An OpenID Connect sign-in under way: what the callback must match (state is the key;
-- used once), with the PKCE verifier and nonce.
CREATE TABLE oidc_states (
  state TEXT PRIMARY KEY,
  provider TEXT NOT NULL,
  nonce TEXT NOT NULL,
  pkce_verifier TEXT NOT NULL,
  -- SHA-256 of the binder the starting client holds (its cookie).
  binder_hash BYTEA NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oidc_states_created ON oidc_states (created_at);

-- An account's identity at a single sign-on provider (the ID token's `sub`).
CREATE TABLE user_identities (
  provider TEXT NOT NULL,
  subject TEXT NOT NULL,
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  email TEXT NOT NULL,
  linked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (provider, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- Passkeys (WebAuthn credentials), several per user. static_state and dynamic_state are
-- webauthn_rp's encodings (the public key; the signature counter and flags).
CREATE TABLE passkeys (
  id BYTEA PRIMARY KEY,
  user_id UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  static_state BYTEA NOT NULL,
  dynamic_state BYTEA NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_used_at TIMESTAMPTZ
);
CREATE INDEX passkeys_user ON passkeys (user_id);

-- WebAuthn ceremonies under way, by challenge: kind 'register', 'sign_in' or
-- 'second_factor'; user_id for those bound to a user.
CREATE TABLE webauthn_ceremonies (
  challenge BYTEA PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('register', 'sign_in', 'second_factor')),
  user_id UUID REFERENCES users(id) ON DELETE CASCADE,
  state BYTEA NOT NULL,
  expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX webauthn_ceremonies_expiry ON webauthn_ceremonies (expires_at);

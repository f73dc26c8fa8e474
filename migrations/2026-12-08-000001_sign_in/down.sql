DROP TABLE user_identities;
DROP TABLE oidc_states;
DROP TABLE sign_in_policy;
DROP TABLE sign_in_challenges;
DROP TABLE recovery_codes;
DROP TABLE user_totp;
DROP TABLE sessions;

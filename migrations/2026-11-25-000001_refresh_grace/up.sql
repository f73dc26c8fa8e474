-- The token a rotation issued, sealed with a pad derived from the rotated token (so only a
-- holder of that token can read it): presenting the rotated token again within a short grace
-- window returns the same successor instead of being treated as theft (two tabs refreshing
-- at once).
ALTER TABLE refresh_tokens ADD COLUMN successor_sealed BYTEA;

-- Files: each attachment row knows where it is in its life (pending until attached to a
-- message; deleting while its object is being removed) and the checksum the uploader gave.
ALTER TABLE attachments
  ADD COLUMN state TEXT NOT NULL DEFAULT 'attached'
    CONSTRAINT attachments_state_check CHECK (state IN ('pending', 'attached', 'deleting')),
  ADD COLUMN checksum_sha256 TEXT;
UPDATE attachments SET state = 'pending' WHERE message_id IS NULL;
ALTER TABLE attachments ALTER COLUMN state SET DEFAULT 'pending';
ALTER TABLE attachments ALTER COLUMN content_type SET DEFAULT 'application/octet-stream';
UPDATE attachments SET content_type = 'application/octet-stream' WHERE content_type IS NULL;
ALTER TABLE attachments ALTER COLUMN content_type SET NOT NULL;
CREATE UNIQUE INDEX attachments_key_idx ON attachments (bucket, key);

DROP INDEX attachments_key_idx;
ALTER TABLE attachments ALTER COLUMN content_type DROP NOT NULL;
ALTER TABLE attachments ALTER COLUMN content_type DROP DEFAULT;
ALTER TABLE attachments DROP COLUMN checksum_sha256, DROP COLUMN state;

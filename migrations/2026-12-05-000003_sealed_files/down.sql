ALTER TABLE attachments DROP COLUMN staging_key;

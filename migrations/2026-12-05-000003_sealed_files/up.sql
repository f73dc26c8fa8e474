-- Uploads land on a staging object that only the upload URL writes; attaching copies it to a
-- key nothing writes (`key`) and records its SHA-256. NULL for files reserved before this
-- version, whose upload URL wrote `key` itself.
ALTER TABLE attachments ADD COLUMN staging_key text;

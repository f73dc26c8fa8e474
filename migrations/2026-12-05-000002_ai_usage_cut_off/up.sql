-- Answers that did not finish (cancelled by their client, failed, timed out) are counted too:
-- how many, and the answer tokens they streamed, estimated (from the text) where the provider
-- gave no count.
ALTER TABLE ai_usage
  ADD COLUMN cut_off BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN estimated_completion_tokens BIGINT NOT NULL DEFAULT 0;

ALTER TABLE ai_usage
  DROP COLUMN estimated_completion_tokens,
  DROP COLUMN cut_off;

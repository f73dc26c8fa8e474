DROP INDEX jobs_kind_key_created_idx;

DROP INDEX jobs_failed_idx;

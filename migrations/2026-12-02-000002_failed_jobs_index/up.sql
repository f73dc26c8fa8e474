-- /metrics counts failed jobs at every scrape: without this, a scan of every job ever run.
CREATE INDEX jobs_failed_idx ON jobs (id) WHERE status = 'failed';

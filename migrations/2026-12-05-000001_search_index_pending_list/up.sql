-- GIN's pending list of the message search index is merged into the index in small steps:
-- with the default limit (4 MB), the insert that finds the list past it merges it inside the
-- send's transaction, a stall of ~150 ms for every send waiting behind it (seen in
-- benches/realtime.sh's latency sweep as one slow rate in several); at 64 kB each merge is
-- short, and inserts still go to the list in bulk.
ALTER INDEX messages_search_idx SET (gin_pending_list_limit = 64);

-- The audit log: admin actions and security events, append-only (rows are never changed or
-- removed, by the server or by anyone else on the database short of dropping the trigger).
CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    action TEXT NOT NULL,
    -- Who did it (an admin, the signed-in user); NULL for a sign-in that named no account.
    actor_id UUID,
    -- What it was done to, e.g. `user:<uuid>`, `division:7`, `signing-key:<kid>`.
    target TEXT,
    -- The client's address, where the call knew it.
    client_ip TEXT,
    details JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_by_time ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_by_action ON audit_log (action, at DESC, id DESC);
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, at DESC, id DESC);
CREATE INDEX audit_log_by_target ON audit_log (target, at DESC, id DESC);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- Tamper-evident audit trail (issue 8). Each row's hash chains to the previous row's:
-- row_hash = SHA-256(prev_hash || canonical JSON of the row's content) (monitor/audit/trail.py).
-- Rows are append-only: UPDATE, DELETE and TRUNCATE are refused by triggers, and the
-- application role radwatch_app holds only SELECT and INSERT on these tables
-- (21 CFR 11.10(e): never obscure previously recorded information).
CREATE TABLE audit_events (
    seq          bigint PRIMARY KEY CHECK (seq > 0),
    recorded_at  timestamptz NOT NULL,
    actor        text NOT NULL,
    action       text NOT NULL,
    entity_type  text NOT NULL,
    entity_id    text NOT NULL,
    entity_version text,
    outcome      text NOT NULL,
    reason       text,
    refs         jsonb NOT NULL DEFAULT '{}',
    detail       jsonb NOT NULL DEFAULT '{}',
    prev_hash    text NOT NULL,
    row_hash     text NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (recorded_at);
CREATE INDEX audit_events_entity ON audit_events (entity_type, entity_id);
CREATE INDEX audit_events_action ON audit_events (action, seq);

-- Signed Merkle checkpoints (monitor/audit/checkpoint.py): each covers the rows
-- first_seq..last_seq added since the previous checkpoint (RFC 6962 tree hash), and chains to
-- the previous checkpoint's signature so a removed checkpoint is noticed too.
CREATE TABLE audit_checkpoints (
    id           bigint PRIMARY KEY CHECK (id > 0),
    created_at   timestamptz NOT NULL,
    first_seq    bigint NOT NULL,
    last_seq     bigint NOT NULL,
    merkle_root  text NOT NULL,
    last_row_hash text NOT NULL,
    prev_checkpoint_hash text NOT NULL,
    key_id       text NOT NULL,
    signature    text NOT NULL,
    CHECK (last_seq >= first_seq)
);

CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% on % refused: the audit trail is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- The application role. Roles are cluster-wide, so it is created only when missing (and a
-- concurrent migration of another database on the same cluster may win the race).
-- NOLOGIN: deployments create their login user IN ROLE radwatch_app (deploy/postgres/README.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'radwatch_app') THEN
        CREATE ROLE radwatch_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created meanwhile by a migration of another database on this cluster
END;
$$;

-- Ordinary read/write on the ingest and analysis tables (this migration's and every later
-- one's, created by the same migrating role), but only SELECT and INSERT on the audit tables.
GRANT USAGE ON SCHEMA public TO radwatch_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO radwatch_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO radwatch_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO radwatch_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO radwatch_app;
REVOKE ALL ON audit_events, audit_checkpoints FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events, audit_checkpoints FROM radwatch_app;
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO radwatch_app;

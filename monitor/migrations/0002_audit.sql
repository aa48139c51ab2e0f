-- Tamper-evident audit trail (issue: compliance audit trail). Each row's hash chains to the
-- previous row's: row_hash = SHA-256(prev_hash || canonical JSON of the row's content).
CREATE TABLE audit_events (
    seq          bigint PRIMARY KEY,
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

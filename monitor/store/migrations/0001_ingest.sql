-- Ingest tables (walking skeleton). No PHI: identifiers are pseudonyms (DESIGN.md §5).
CREATE TABLE inferences (
    event_id        text PRIMARY KEY,
    content_hash    text NOT NULL,
    model_name      text NOT NULL,
    model_version   text,
    site            text,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    study_pseudo    text NOT NULL,
    series_pseudo   text,
    sop_pseudo      text,
    accession_pseudo text,
    patient_pseudo  text,
    image_ref       text,
    dicom           jsonb NOT NULL DEFAULT '{}',
    scores          jsonb NOT NULL,
    thresholds      jsonb NOT NULL DEFAULT '{}',
    embedding       real[],
    latency_ms      double precision,
    extra           jsonb NOT NULL DEFAULT '{}',
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL
);
CREATE INDEX inferences_model_time ON inferences (model_name, occurred_at);
CREATE INDEX inferences_study ON inferences (model_name, study_pseudo);

CREATE TABLE labels (
    event_id        text PRIMARY KEY,
    content_hash    text NOT NULL,
    model_name      text NOT NULL,
    study_pseudo    text NOT NULL,
    labels          jsonb NOT NULL,
    source          text,
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    extra           jsonb NOT NULL DEFAULT '{}',
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL
);
CREATE INDEX labels_study ON labels (model_name, study_pseudo, occurred_at);

-- One row per rejected record. The original bytes go to the dead-letter topic; here we keep
-- a redacted copy (identifier-keyed values pseudonymised) and the SHA-256 of the original,
-- so nothing PHI-bearing lands in PostgreSQL while every rejection stays traceable.
CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    kafka_topic     text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    reason          text NOT NULL,
    message         text NOT NULL,
    payload_sha256  text NOT NULL,
    payload_size    integer NOT NULL,
    payload_redacted jsonb,
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kafka_topic, kafka_partition, kafka_offset, reason)
);
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);

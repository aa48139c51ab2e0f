-- Performance watch (issue 6): label history and supersession, label corrections, and
-- realised vs estimated performance per model / window / stratum / finding / metric.

-- Every label event stays a row of `labels`; a later read of the same (model, study)
-- supersedes an earlier one. "Later" is the read's own time (occurred_at), then arrival,
-- so a replayed or late-delivered older read never overrides a newer one.
CREATE VIEW label_history AS
SELECT l.event_id, l.model_name, l.study_pseudo, l.labels, l.source, l.occurred_at,
       l.received_at,
       row_number() OVER w AS revision,
       lead(l.event_id) OVER w AS superseded_by
FROM labels l
WINDOW w AS (PARTITION BY l.model_name, l.study_pseudo
             ORDER BY l.occurred_at, l.received_at, l.event_id);

CREATE VIEW current_labels AS
SELECT event_id, model_name, study_pseudo, labels, source, occurred_at, received_at, revision
FROM label_history
WHERE superseded_by IS NULL;

-- A correction: a superseding read that changed at least one finding. Recorded once per
-- (superseded, superseding) pair, each with an audit row; nothing is overwritten.
CREATE TABLE label_corrections (
    id                  bigserial PRIMARY KEY,
    model_name          text NOT NULL,
    study_pseudo        text NOT NULL,
    superseded_event_id text NOT NULL REFERENCES labels (event_id),
    event_id            text NOT NULL REFERENCES labels (event_id),
    previous_labels     jsonb NOT NULL,
    labels              jsonb NOT NULL,
    changed_findings    text[] NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (superseded_event_id, event_id)
);
CREATE INDEX label_corrections_study ON label_corrections (model_name, study_pseudo);

-- One row per model / window / stratum / finding / metric, recomputed (upserted) as labels
-- arrive: the realised value with its interval beside the label-free estimate with its band.
CREATE TABLE performance_results (
    id                 bigserial PRIMARY KEY,
    model_name         text NOT NULL,
    finding            text NOT NULL,
    window_kind        text NOT NULL,          -- 'reference', 'count:500', 'day', 'week'
    window_index       integer NOT NULL,
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL,
    stratum_kind       text NOT NULL,          -- 'all', 'site', 'scanner', 'sex', 'age_band'
    stratum_value      text NOT NULL,
    metric             text NOT NULL,
    status             text NOT NULL,          -- detectors.drift.results.Status value
    n_inferences       integer NOT NULL,
    n_labelled         integer NOT NULL,
    n_positive         integer NOT NULL,
    realised           double precision,
    realised_lower     double precision,
    realised_upper     double precision,
    realised_n         integer,
    estimated          double precision,
    estimated_lower    double precision,
    estimated_upper    double precision,
    estimate_reliable  boolean,
    estimate_flags     jsonb NOT NULL DEFAULT '[]',
    reference_value    double precision,
    degradation_p      double precision,
    degraded           boolean NOT NULL DEFAULT false,
    subgroup_p         double precision,
    subgroup_worse     boolean NOT NULL DEFAULT false,
    details            jsonb NOT NULL DEFAULT '{}',
    computed_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_name, finding, window_kind, window_index, stratum_kind, stratum_value, metric)
);
CREATE INDEX performance_results_model_time ON performance_results (model_name, window_end);

-- Which completed windows have been fed to the alert lifecycle (monitor/alerts/lifecycle.py), so a
-- re-run never observes the same window twice and windows are observed in order.
CREATE TABLE performance_observations (
    model_name     text NOT NULL,
    stratum_kind   text NOT NULL,
    stratum_value  text NOT NULL,
    window_kind    text NOT NULL,
    window_index   integer NOT NULL,
    window_end     timestamptz NOT NULL,
    firing         boolean NOT NULL,
    details        jsonb NOT NULL DEFAULT '{}',
    observed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_name, stratum_kind, stratum_value, window_kind, window_index)
);

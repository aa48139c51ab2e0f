-- Drift detection (issue 5): frozen references, fitted detectors, window results, online
-- detector state, and the one alert lifecycle shared with performance monitoring.
-- No PHI: studies appear only as pseudonyms; events are known by their event_id.

-- A validated reference period, frozen: which events, how many per stratum, a content hash.
CREATE TABLE drift_references (
    id                   bigserial PRIMARY KEY,
    model_name           text NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    created_by           text NOT NULL,
    period_from          timestamptz,
    period_to            timestamptz,
    first_n              integer,
    n_events             integer NOT NULL,
    n_fit                integer NOT NULL,
    n_holdout            integer NOT NULL,
    last_occurred_at     timestamptz NOT NULL,   -- detection starts after this event
    last_event_id        text NOT NULL,
    strata_counts        jsonb NOT NULL,         -- {"site": {"north-general": 812, ...}, ...}
    content_hash         text NOT NULL,          -- SHA-256 over the members' content hashes
    embedder_fingerprint text,                   -- default encoder used (null: none stored)
    detector_fingerprint text NOT NULL,          -- hash of the suite configuration + backend
    config               jsonb NOT NULL,
    calibration          jsonb NOT NULL,
    active               boolean NOT NULL DEFAULT true
);
-- One active reference per model; older ones are kept (results name their reference).
CREATE UNIQUE INDEX drift_references_active ON drift_references (model_name) WHERE active;

CREATE TABLE drift_reference_members (
    reference_id bigint NOT NULL REFERENCES drift_references (id),
    event_id     text NOT NULL,
    role         text NOT NULL CHECK (role IN ('fit', 'holdout')),
    PRIMARY KEY (reference_id, event_id)
);

-- The fitted detector suite (our artifact: pickled detectors + manifest), verified by hash
-- before use, so detection never refits.
CREATE TABLE drift_reference_artifacts (
    reference_id bigint PRIMARY KEY REFERENCES drift_references (id),
    manifest     jsonb NOT NULL,
    sha256       text NOT NULL,
    blob         bytea NOT NULL
);

-- One row per fitted detector and stratum, with the false-alarm rate measured on held-out
-- reference sub-windows (whole-model stratum) at fit time.
CREATE TABLE drift_detector_fits (
    reference_id        bigint NOT NULL REFERENCES drift_references (id),
    detector            text NOT NULL,
    signal              text NOT NULL,
    stratum_kind        text NOT NULL,
    stratum_value       text NOT NULL,
    n_reference         integer NOT NULL,
    false_alarm_rate    double precision,
    calibration_windows integer,
    null_mean           double precision,
    null_sd             double precision,
    fingerprint         text NOT NULL,
    PRIMARY KEY (reference_id, detector, stratum_kind, stratum_value)
);

-- Evaluated windows (count-based, bounded in time) per model.
CREATE TABLE drift_windows (
    id             bigserial PRIMARY KEY,
    model_name     text NOT NULL,
    reference_id   bigint NOT NULL REFERENCES drift_references (id),
    seq            integer NOT NULL,
    window_start   timestamptz NOT NULL,
    window_end     timestamptz NOT NULL,
    first_event_id text NOT NULL,
    last_event_id  text NOT NULL,
    n_events       integer NOT NULL,
    closed_by      text NOT NULL,          -- 'count' | 'time'
    unified_score  double precision,
    firing         jsonb NOT NULL DEFAULT '[]',
    computed_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (reference_id, seq)
);
CREATE INDEX drift_windows_model ON drift_windows (model_name, window_end);

-- One row per (window, stratum, detector, feature); feature '' is the detector as a whole.
CREATE TABLE drift_results (
    id                   bigserial PRIMARY KEY,
    window_id            bigint NOT NULL REFERENCES drift_windows (id),
    model_name           text NOT NULL,
    model_version        text,
    reference_id         bigint NOT NULL REFERENCES drift_references (id),
    reference_hash       text NOT NULL,
    detector             text NOT NULL,
    detector_fingerprint text NOT NULL,
    signal               text NOT NULL,
    feature              text NOT NULL DEFAULT '',
    test                 text,
    stratum_kind         text NOT NULL,
    stratum_value        text NOT NULL,
    status               text NOT NULL CHECK (status IN ('ok', 'drift', 'insufficient_data', 'error')),
    p_value              double precision,
    p_adjusted           double precision,
    statistic            double precision,
    threshold            double precision,
    effect_size          double precision,
    drift                boolean,
    unified_score        double precision,   -- the stratum's unified drift score
    n_reference          integer,
    n_window             integer,
    window_start         timestamptz NOT NULL,
    window_end           timestamptz NOT NULL,
    details              jsonb NOT NULL DEFAULT '{}',
    computed_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drift_results_latest ON drift_results (model_name, stratum_kind, stratum_value, signal, window_end);
CREATE INDEX drift_results_window ON drift_results (window_id);

-- Where detection is for each model: windows evaluated up to here; online detectors fed
-- up to (online_at, online_event_id).
CREATE TABLE drift_cursors (
    model_name       text PRIMARY KEY,
    reference_id     bigint NOT NULL REFERENCES drift_references (id),
    window_seq       integer NOT NULL DEFAULT 0,
    window_at        timestamptz NOT NULL,
    window_event_id  text NOT NULL,
    online_at        timestamptz NOT NULL,
    online_event_id  text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Online detector state (alibi save_state, packed), so a restart resumes the run length.
CREATE TABLE drift_online_state (
    reference_id bigint NOT NULL REFERENCES drift_references (id),
    detector     text NOT NULL,
    t            integer NOT NULL,
    state        bytea NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reference_id, detector)
);

-- Online detector firings (each is also an alert observation).
CREATE TABLE drift_online_events (
    id           bigserial PRIMARY KEY,
    reference_id bigint NOT NULL REFERENCES drift_references (id),
    model_name   text NOT NULL,
    detector     text NOT NULL,
    event_id     text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    t            integer NOT NULL,
    statistic    double precision,
    threshold    double precision,
    computed_at  timestamptz NOT NULL DEFAULT now()
);

-- THE alert lifecycle (drift and performance): one alert per (model, stratum, signal) at a
-- time, open → acknowledged → resolved (automatically with hysteresis, or by a person).
CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    model_name       text NOT NULL,
    stratum_kind     text NOT NULL,
    stratum_value    text NOT NULL,
    signal           text NOT NULL,
    state            text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    opened_at        timestamptz NOT NULL DEFAULT now(),
    first_window_end timestamptz,
    last_window_end  timestamptz,
    onset            timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    details          jsonb NOT NULL DEFAULT '{}',
    acknowledged_by  text,
    acknowledged_at  timestamptz,
    acknowledged_note text,
    resolved_by      text,
    resolved_at      timestamptz,
    resolved_note    text
);
CREATE UNIQUE INDEX alerts_one_active ON alerts (model_name, stratum_kind, stratum_value, signal)
    WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, opened_at);

-- Consecutive firing / quiet windows per (model, stratum, signal): the persistence and
-- hysteresis counters behind opening and auto-resolving.
CREATE TABLE alert_streaks (
    model_name      text NOT NULL,
    stratum_kind    text NOT NULL,
    stratum_value   text NOT NULL,
    signal          text NOT NULL,
    firing_run      integer NOT NULL DEFAULT 0,
    quiet_run       integer NOT NULL DEFAULT 0,
    first_firing_end timestamptz,
    last_window_end timestamptz,
    PRIMARY KEY (model_name, stratum_kind, stratum_value, signal)
);

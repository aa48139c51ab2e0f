-- Watching the labeler and the AI-vs-report discrepancy signal (issue 17).
--
-- label_reviews: the share of report-derived labels (source 'report-labeler') queued for a
-- radiologist's confirmation (`radwatch labels review`, monitor/labelwatch/review.py). Which
-- labels are queued is decided by a keyed hash of the label's event id (HMAC with the
-- pseudonym key), so the choice is reproducible and a producer cannot steer its labels out of
-- review. One row per queued label; the answer is written into the same row once: who, when,
-- and per finding the value the reviewer confirmed (`answers`: {finding: 0|1}). A
-- disagreement stores the corrected label as a new `labels` row (source
-- 'radiologist-report'), which supersedes the derived one in label_history.
CREATE TABLE label_reviews (
    id                 bigserial PRIMARY KEY,
    event_id           text NOT NULL UNIQUE REFERENCES labels (event_id),
    model_name         text NOT NULL,
    study_pseudo       text NOT NULL,          -- as stored (an 'accession:' placeholder too)
    derived            jsonb NOT NULL,          -- {finding: 0|1} as the labeler derived them
    labeler            jsonb,
    queued_at          timestamptz NOT NULL DEFAULT now(),
    state              text NOT NULL DEFAULT 'queued'
                       CHECK (state IN ('queued', 'agree', 'disagree', 'skip')),
    reviewer           text,
    reviewed_at        timestamptz,
    answers            jsonb NOT NULL DEFAULT '{}',
    corrected_event_id text REFERENCES labels (event_id),
    CHECK ((state = 'queued') = (reviewed_at IS NULL))
);
CREATE INDEX label_reviews_queue ON label_reviews (model_name, state, id);
CREATE INDEX label_reviews_reviewed ON label_reviews (model_name, reviewed_at)
    WHERE reviewed_at IS NOT NULL;

-- The discrepancy signal (monitor/labelwatch/discrepancy.py): per model, window, finding and
-- stratum (all, site, scanner, model_version), the AI's call against the report's label, and
-- the one-sided two-proportion test against the reference period's rate in the same stratum.
CREATE TABLE discrepancy_results (
    id               bigserial PRIMARY KEY,
    model_name       text NOT NULL,
    finding          text NOT NULL,           -- '*': all findings together
    window_kind      text NOT NULL,           -- 'reference', 'count:N'
    window_index     integer NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    stratum_kind     text NOT NULL,
    stratum_value    text NOT NULL,
    status           text NOT NULL,           -- detectors.drift.results.Status value
    n                integer NOT NULL,
    n_discrepant     integer NOT NULL,
    n_ai_only        integer NOT NULL,        -- AI positive, report negative
    n_report_only    integer NOT NULL,        -- report positive, AI negative
    rate             double precision,
    reference_n      integer NOT NULL,
    reference_rate   double precision,
    z                double precision,
    p_value          double precision,
    level            double precision,
    flagged          boolean NOT NULL DEFAULT false,
    computed_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model_name, finding, window_kind, window_index, stratum_kind, stratum_value)
);
CREATE INDEX discrepancy_results_model_time ON discrepancy_results (model_name, window_end);

-- Per-model pass status (issue 13): each model is judged in isolation by the detection
-- scheduler and the performance watch; a pass that fails leaves its exception class here
-- (never its message), the other models go on, and /metrics reads this table.
CREATE TABLE model_pass_status (
    model_name    text NOT NULL,
    component     text NOT NULL CHECK (component IN ('drift', 'performance')),
    status        text NOT NULL CHECK (status IN ('ok', 'error')),
    error_class   text,
    last_run_at   timestamptz NOT NULL,
    last_ok_at    timestamptz,
    last_error_at timestamptz,
    errors_total  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (model_name, component)
);

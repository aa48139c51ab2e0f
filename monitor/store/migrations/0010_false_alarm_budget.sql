-- The false-alarm budget (issue 15): per model, the settings detection runs with (α, persistence,
-- CUSUM ARL0, online ERT), the budget and the observed volume they were derived from. One row per
-- model, replaced when the derived settings change; every change is in the audit trail
-- (budget.derived) with the previous settings, so the history lives there.
CREATE TABLE false_alarm_budgets (
    model_name  text PRIMARY KEY,
    budget      jsonb NOT NULL,   -- {"incidents": 1, "days": 90}
    settings    jsonb NOT NULL,   -- what detection runs with (Derivation.settings)
    derivation  jsonb NOT NULL,   -- the whole derivation, to redo it by hand
    derived_at  timestamptz NOT NULL DEFAULT now()
);

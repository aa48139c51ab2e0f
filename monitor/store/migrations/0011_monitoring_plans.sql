-- The post-market monitoring plan (issue 16): each approved version of a model's plan, as the
-- canonical YAML that radwatch runs. The newest approved version is in force; a plan that was
-- never approved has no effect (radwatch runs the default plan, `radwatch plan show`).
-- Approvals are in the audit trail too (plan.approved, with the diff against the version before).
CREATE TABLE monitoring_plans (
    id           bigserial PRIMARY KEY,
    model_name   text NOT NULL,
    version      text NOT NULL,
    content      text NOT NULL,            -- canonical YAML (monitor.plan.document.dump)
    sha256       text NOT NULL,
    approved_by  text NOT NULL,
    approved_at  timestamptz NOT NULL DEFAULT now(),
    note         text,
    UNIQUE (model_name, version)
);
CREATE INDEX monitoring_plans_model ON monitoring_plans (model_name, approved_at DESC, id DESC);

-- The clause of the plan an incident fired under, and that plan's version.
ALTER TABLE incidents ADD COLUMN plan_clause text;
ALTER TABLE incidents ADD COLUMN plan_version text;
-- A stop rule that held: "suspend use recommended", and the person's decision.
ALTER TABLE incidents ADD COLUMN stop_rule text;
ALTER TABLE incidents ADD COLUMN decision text CHECK (decision IN ('suspend', 'continue'));
ALTER TABLE incidents ADD COLUMN decided_by text;
ALTER TABLE incidents ADD COLUMN decided_at timestamptz;
ALTER TABLE incidents ADD COLUMN decision_reason text;

-- Incidents (issue 15): related alerts of one model (overlapping onset, nested strata, several
-- signals) form one incident with one root-cause statement, a shift type and a recommended
-- action. People acknowledge and resolve the incident; its alerts stay for the audit trail.
-- Alertmanager is notified per incident (the grouping key is the incident id).
CREATE TABLE incidents (
    id                 bigserial PRIMARY KEY,
    model_name         text NOT NULL,
    state              text NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    root_cause_kind    text NOT NULL,           -- the stratum the shift is localised to:
    root_cause_value   text NOT NULL,           --   'scanner' / 'ACME X1', or 'all' / 'all'
    root_cause         text NOT NULL,           -- e.g. 'scanner=ACME X1'
    shift_type         text NOT NULL CHECK (shift_type IN ('acquisition', 'population',
                           'prevalence', 'integration', 'performance', 'unknown')),
    summary            text NOT NULL,           -- the one-paragraph root-cause statement
    recommended_action text NOT NULL,
    onset              timestamptz,
    opened_at          timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    details            jsonb NOT NULL DEFAULT '{}',
    acknowledged_by    text,
    acknowledged_at    timestamptz,
    acknowledged_note  text,
    resolved_by        text,
    resolved_at        timestamptz,
    resolved_note      text
);
CREATE INDEX incidents_state ON incidents (model_name, state, opened_at);

ALTER TABLE alerts ADD COLUMN incident_id bigint REFERENCES incidents (id);
CREATE INDEX alerts_incident ON alerts (incident_id);

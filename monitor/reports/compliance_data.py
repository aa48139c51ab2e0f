"""What the compliance document shows, read from PostgreSQL: `radwatch compliance-report`.

At the reading end of the data flow, beside the model report: for one model and period, the
versions and sites seen (inferences), the monitoring plan in force and its approvals
(monitor/plan/store.py, monitoring_plans), the drift references with their provenance and
fitted detectors, the alerts and incidents of the period with who acknowledged, resolved and
decided them, performance by subgroup with intervals (performance_results), and the audit
trail's own count of rows and checkpoints. Reads only; rendering is compliance_sections.py.

"Of the period": an alert or incident belongs to the period when it was active at some time
in it (opened before the end, not resolved before the start) or when the data it describes,
its onset to its last window (event time), overlaps the period — so a replay or backfill of
last month's data, done today, is reported under last month as well as under today.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg

from monitor.audit.verify import VerifyResult
from monitor.plan import store

METRICS = ("sensitivity", "specificity", "auroc")  # the subgroup table's columns, in order


@dataclass(frozen=True)
class VersionSite:
    version: str
    site: str
    inferences: int
    first: datetime
    last: datetime


@dataclass(frozen=True)
class PlanApproval:
    version: str
    approved_by: str
    approved_at: datetime
    note: str | None
    sha256: str


@dataclass(frozen=True)
class PlanState:
    version: str
    approved_by: str | None  # None: the default plan, approved by nobody
    approved_at: datetime | None
    sha256: str
    approvals: tuple[PlanApproval, ...]  # every approval for the model, oldest first


@dataclass(frozen=True)
class Reference:
    id: int
    built_at: datetime
    built_by: str
    period_from: datetime | None
    period_to: datetime | None
    first_n: int | None
    n_events: int
    n_fit: int
    n_holdout: int
    last_occurred_at: datetime
    strata_counts: dict[str, dict[str, int]]
    content_hash: str
    embedder: str | None
    detector_fingerprint: str
    config: dict[str, Any]
    active: bool
    artifact_format: str | None  # None: no stored artifact
    artifact_sha256: str | None


@dataclass(frozen=True)
class DetectorFit:
    reference_id: int
    detector: str  # e.g. "ks:scores" (test:signal)
    signal: str
    stratum_kind: str
    stratum_value: str
    n_reference: int
    false_alarm_rate: float | None  # measured on held-out reference windows (whole model)
    calibration_windows: int | None


@dataclass(frozen=True)
class AlertRow:
    id: int
    signal: str
    stratum_kind: str
    stratum_value: str
    state: str
    opened_at: datetime
    onset: datetime | None
    last_window_end: datetime | None
    incident_id: int | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledged_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolved_note: str | None


@dataclass(frozen=True)
class IncidentRow:
    id: int
    state: str
    root_cause_kind: str
    root_cause_value: str
    shift_type: str
    summary: str
    recommended_action: str
    onset: datetime | None
    opened_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledged_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolved_note: str | None
    plan_clause: str | None
    plan_version: str | None
    stop_rule: str | None
    decision: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    opened_by: str | None  # the audit trail's actor for incident.opened


@dataclass(frozen=True)
class Interval:
    value: float | None
    lower: float | None
    upper: float | None
    n: int | None


@dataclass(frozen=True)
class SubgroupRow:
    """One finding × stratum: its latest window in the period, and how the period went."""

    finding: str
    stratum_kind: str
    stratum_value: str
    window_end: datetime
    labelled: int  # labelled studies in that window
    metrics: dict[str, Interval]
    worse_than_rest: bool  # the subgroup test flagged it against the other strata
    windows: int  # windows of the period
    degraded_windows: int  # of which judged degraded against the reference


@dataclass(frozen=True)
class AuditCounts:
    rows_in_period: int  # audit rows recorded in the period naming this model
    by_action: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class ComplianceData:
    model: str
    start: datetime
    end: datetime
    versions: tuple[VersionSite, ...]
    plan: PlanState
    references: tuple[Reference, ...]
    fits: tuple[DetectorFit, ...]
    incidents: tuple[IncidentRow, ...]
    alerts: tuple[AlertRow, ...]
    performance_window: str | None  # the window kind the subgroup table reads ('count:500')
    subgroups: tuple[SubgroupRow, ...]
    audit: AuditCounts
    verification: VerifyResult
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def load(conn: psycopg.Connection, model: str, start: datetime, end: datetime,
         verification: VerifyResult) -> ComplianceData:  # fmt: skip
    """Everything the document shows for `model` over [start, end) (reads only)."""
    window, subgroups = _subgroups(conn, model, start, end)
    alerts = _alerts(conn, model, start, end)
    return ComplianceData(
        model=model, start=start, end=end,
        versions=_versions(conn, model, start, end),
        plan=_plan(conn, model),
        references=_references(conn, model, end),
        fits=_fits(conn, model, end),
        incidents=_incidents(conn, model, start, end, {a.incident_id for a in alerts}),
        alerts=alerts,
        performance_window=window, subgroups=subgroups,
        audit=_audit(conn, model, start, end),
        verification=verification,
    )  # fmt: skip


def _versions(conn: psycopg.Connection, model: str, start: datetime, end: datetime
              ) -> tuple[VersionSite, ...]:  # fmt: skip
    rows = conn.execute(
        """SELECT coalesce(model_version, '(none)'), coalesce(site, '(none)'), count(*),
                  min(occurred_at), max(occurred_at)
           FROM inferences WHERE model_name = %s AND occurred_at >= %s AND occurred_at < %s
           GROUP BY 1, 2 ORDER BY 1, 2""",
        (model, start, end),
    ).fetchall()
    return tuple(VersionSite(*r) for r in rows)


def _plan(conn: psycopg.Connection, model: str) -> PlanState:
    found = store.in_force(conn, model)
    rows = conn.execute(
        """SELECT version, approved_by, approved_at, note, sha256 FROM monitoring_plans
           WHERE model_name = %s ORDER BY approved_at, id""",
        (model,),
    ).fetchall()
    return PlanState(found.plan.version, found.approved_by, found.approved_at, found.sha256,
                     tuple(PlanApproval(*r) for r in rows))  # fmt: skip


def _references(conn: psycopg.Connection, model: str, end: datetime) -> tuple[Reference, ...]:
    rows = conn.execute(
        """SELECT r.id, r.created_at, r.created_by, r.period_from, r.period_to, r.first_n,
                  r.n_events, r.n_fit, r.n_holdout, r.last_occurred_at, r.strata_counts,
                  r.content_hash, r.embedder_fingerprint, r.detector_fingerprint, r.config,
                  r.active, a.format, a.sha256
           FROM drift_references r LEFT JOIN drift_reference_artifacts a ON a.reference_id = r.id
           WHERE r.model_name = %s AND r.created_at < %s ORDER BY r.id""",
        (model, end),
    ).fetchall()
    return tuple(Reference(*r) for r in rows)


def _fits(conn: psycopg.Connection, model: str, end: datetime) -> tuple[DetectorFit, ...]:
    rows = conn.execute(
        """SELECT f.reference_id, f.detector, f.signal, f.stratum_kind, f.stratum_value,
                  f.n_reference, f.false_alarm_rate, f.calibration_windows
           FROM drift_detector_fits f JOIN drift_references r ON r.id = f.reference_id
           WHERE r.model_name = %s AND r.created_at < %s
           ORDER BY f.reference_id, f.signal, f.detector, f.stratum_kind <> 'all',
                    f.stratum_kind, f.stratum_value""",
        (model, end),
    ).fetchall()
    return tuple(DetectorFit(*r) for r in rows)


_ACTIVE_IN = """(opened_at < %(e)s AND (resolved_at IS NULL OR resolved_at >= %(s)s))"""


def _alerts(conn: psycopg.Connection, model: str, start: datetime, end: datetime
            ) -> tuple[AlertRow, ...]:  # fmt: skip
    rows = conn.execute(
        f"""SELECT id, signal, stratum_kind, stratum_value, state, opened_at, onset,
                   last_window_end, incident_id, acknowledged_by, acknowledged_at,
                   acknowledged_note, resolved_by, resolved_at, resolved_note
            FROM alerts WHERE model_name = %(m)s AND ({_ACTIVE_IN}
              OR (coalesce(onset, first_window_end, opened_at) < %(e)s
                  AND coalesce(last_window_end, onset, first_window_end, opened_at) >= %(s)s))
            ORDER BY opened_at, id""",
        {"m": model, "s": start, "e": end},
    ).fetchall()
    return tuple(AlertRow(*r) for r in rows)


def _incidents(conn: psycopg.Connection, model: str, start: datetime, end: datetime,
               of_alerts: set[int | None]) -> tuple[IncidentRow, ...]:  # fmt: skip
    rows = conn.execute(
        f"""SELECT id, state, root_cause_kind, root_cause_value, shift_type, summary,
                   recommended_action, onset, opened_at, acknowledged_by, acknowledged_at,
                   acknowledged_note, resolved_by, resolved_at, resolved_note, plan_clause,
                   plan_version, stop_rule, decision, decided_by, decided_at, decision_reason,
                   (SELECT actor FROM audit_events WHERE action = 'incident.opened'
                      AND entity_type = 'incident' AND entity_id = i.id::text
                    ORDER BY seq LIMIT 1)
            FROM incidents i WHERE model_name = %(m)s AND ({_ACTIVE_IN}
              OR (onset >= %(s)s AND onset < %(e)s) OR id = ANY(%(ids)s))
            ORDER BY opened_at, id""",
        {"m": model, "s": start, "e": end, "ids": [i for i in of_alerts if i is not None]},
    ).fetchall()
    return tuple(IncidentRow(*r) for r in rows)


def _subgroups(conn: psycopg.Connection, model: str, start: datetime, end: datetime
               ) -> tuple[str | None, tuple[SubgroupRow, ...]]:  # fmt: skip
    where = """model_name = %(m)s AND window_kind <> 'reference' AND finding <> '*'
               AND window_end > %(s)s AND window_end <= %(e)s"""
    params: dict[str, Any] = {"m": model, "s": start, "e": end}
    kinds = conn.execute(
        f"SELECT window_kind, count(*) FROM performance_results WHERE {where} GROUP BY 1 "
        "ORDER BY 2 DESC, 1 LIMIT 1",
        params,
    ).fetchone()
    if kinds is None:
        return None, ()
    params["k"], params["metrics"] = kinds[0], list(METRICS)
    latest = conn.execute(
        f"""SELECT DISTINCT ON (finding, stratum_kind, stratum_value, metric)
                   finding, stratum_kind, stratum_value, metric, window_end, n_labelled,
                   realised, realised_lower, realised_upper, realised_n, subgroup_worse
            FROM performance_results WHERE {where} AND window_kind = %(k)s
              AND metric = ANY(%(metrics)s)
            ORDER BY finding, stratum_kind, stratum_value, metric, window_end DESC""",
        params,
    ).fetchall()
    periods = conn.execute(
        f"""SELECT finding, stratum_kind, stratum_value, count(DISTINCT window_index),
                   count(DISTINCT window_index) FILTER (WHERE degraded)
            FROM performance_results WHERE {where} AND window_kind = %(k)s
              AND metric = ANY(%(metrics)s) GROUP BY 1, 2, 3""",
        params,
    ).fetchall()
    counts = {(str(r[0]), str(r[1]), str(r[2])): (int(r[3]), int(r[4])) for r in periods}
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f, kind, value, metric, w_end, labelled, v, lo, hi, n, worse in latest:
        cell = cells.setdefault((f, kind, value), {"end": w_end, "labelled": labelled,
                                                   "metrics": {}, "worse": False})  # fmt: skip
        cell["metrics"][metric] = Interval(v, lo, hi, n)
        cell["worse"] = cell["worse"] or bool(worse)
        cell["end"] = max(cell["end"], w_end)
    out = [
        SubgroupRow(f, kind, value, c["end"], int(c["labelled"]), c["metrics"], c["worse"],
                    *counts.get((f, kind, value), (0, 0)))
        for (f, kind, value), c in cells.items()
    ]  # fmt: skip
    out.sort(key=lambda r: (r.finding, r.stratum_kind != "all", r.stratum_kind, r.stratum_value))
    return str(kinds[0]), tuple(out)


def _audit(conn: psycopg.Connection, model: str, start: datetime, end: datetime) -> AuditCounts:
    rows = conn.execute(
        """SELECT action, count(*) FROM audit_events
           WHERE (refs->>'model' = %(m)s OR refs->>'model_name' = %(m)s
                  OR detail->>'model' = %(m)s OR detail->>'model_name' = %(m)s
                  OR entity_id = %(m)s)
             AND recorded_at >= %(s)s AND recorded_at < %(e)s
           GROUP BY 1 ORDER BY 1""",
        {"m": model, "s": start, "e": end},
    ).fetchall()
    counts = Counter({str(a): int(n) for a, n in rows})
    return AuditCounts(sum(counts.values()), tuple(sorted(counts.items())))

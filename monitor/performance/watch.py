"""Performance watch: join delayed radiologist labels to inferences, evaluate, store, alert.

Between PostgreSQL (inferences, labels) and the alert lifecycle: labels are joined to
inferences by (model, study pseudonym) whatever the arrival order (the `current_labels`
view keeps the latest read, `label_corrections` records changed reads); the joined studies
go to the pure evaluation (monitor/performance/evaluation.py), its results are upserted into
`performance_results`, and completed windows feed `performance` alerts; the sequential channel
(monitor/performance/sequential.py: CUSUMs in label-arrival order) feeds `performance_cusum`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from detectors.drift.results import Status
from detectors.false_alarm_budget import FalseAlarmBudget
from monitor import model_status
from monitor.alerts import budget
from monitor.audit import trail
from monitor.labelwatch import discrepancy
from monitor.performance import observe, sequential
from monitor.performance.evaluation import (
    ModelReport,
    PerformanceConfig,
    PerformanceWatchError,
    ReferenceChoice,
    Study,
    WindowReport,
    evaluate_model,
    reference_hash,
)
from monitor.performance.observe import ACTOR, AlertObserver
from monitor.plan import store as plans

log = logging.getLogger(__name__)


# --- loading -----------------------------------------------------------------------------


def _stratum_values(dicom: dict[str, Any], site: str | None) -> dict[str, str]:
    vendor = dicom.get("Manufacturer") or "unknown"
    scanner = dicom.get("ManufacturerModelName") or "unknown"
    return {
        "site": site or "unknown",
        "scanner": f"{vendor} {scanner}",
        "sex": str(dicom.get("PatientSex") or "unknown"),
        "age_band": str(dicom.get("AgeBand") or "unknown"),
    }


def load_studies(conn: psycopg.Connection, model: str) -> list[Study]:
    """The model's inferences in event-time order, each with its study's current read."""
    rows = conn.execute(
        """SELECT i.event_id, i.study_pseudo, i.occurred_at, i.site, i.dicom, i.scores,
                  i.thresholds, c.labels, c.occurred_at
           FROM inferences i
           LEFT JOIN current_labels c
             ON c.model_name = i.model_name AND c.study_pseudo = i.study_pseudo
           WHERE i.model_name = %s
           ORDER BY i.occurred_at, i.event_id""",
        (model,),
    ).fetchall()
    return [
        Study(
            str(r[0]),
            str(r[1]),
            r[2],
            _stratum_values(r[4] or {}, r[3]),
            {k: float(v) for k, v in (r[5] or {}).items() if isinstance(v, int | float)},
            {k: float(v) for k, v in (r[6] or {}).items() if isinstance(v, int | float)},
            r[7],
            r[8],
        )  # fmt: skip
        for r in rows
    ]


def frozen_reference(conn: psycopg.Connection, model: str) -> ReferenceChoice | None:
    """The model's active frozen drift reference (`radwatch reference build`) as the
    performance reference: its member events, so both watches judge against the same studies."""
    row = conn.execute(
        "SELECT id FROM drift_references WHERE model_name = %s AND active", (model,)
    ).fetchone()
    if row is None:
        return None
    ids = frozenset(str(r[0]) for r in conn.execute(
        "SELECT event_id FROM drift_reference_members WHERE reference_id = %s", (row[0],)
    ).fetchall())  # fmt: skip
    return ReferenceChoice("frozen", len(ids), int(row[0]), ids)


def models(conn: psycopg.Connection) -> list[str]:
    return [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT model_name FROM inferences ORDER BY 1").fetchall()]  # fmt: skip


def sync_label_corrections(conn: psycopg.Connection, *, actor: str = ACTOR) -> int:
    """Record each superseding read that changed a finding, once, with an audit row."""
    rows = conn.execute(
        """SELECT h.model_name, h.study_pseudo, h.event_id, h.labels, n.event_id, n.labels
           FROM label_history h JOIN labels n ON n.event_id = h.superseded_by
           WHERE h.labels IS DISTINCT FROM n.labels
             AND NOT EXISTS (SELECT 1 FROM label_corrections c
                             WHERE c.superseded_event_id = h.event_id
                               AND c.event_id = n.event_id)
           ORDER BY n.occurred_at, n.event_id"""
    ).fetchall()
    for model, study, old_id, old, new_id, new in rows:
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        with conn.transaction():
            conn.execute(
                """INSERT INTO label_corrections (model_name, study_pseudo, superseded_event_id,
                       event_id, previous_labels, labels, changed_findings)
                   VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                (model, study, old_id, new_id, Jsonb(old), Jsonb(new), changed),
            )
            trail.record(conn, actor=actor, action="label.correct", entity_type="label",
                         entity_id=new_id, refs={"supersedes": old_id, "model": model,
                                                 "study_pseudo": study},
                         detail={"changed_findings": changed, "previous": old, "current": new})  # fmt: skip
    return len(rows)


# --- storage -----------------------------------------------------------------------------

REALISED_ONLY = ("ppv", "npv", "positive_rate", "discordance_rate", "prevalence")


def _rows(model: str, report: WindowReport) -> list[tuple]:
    w = report.window
    flags: dict[tuple[str, str, str, str], tuple[float | None, bool]] = {}
    for table in report.subgroups:
        for r in table.rows:
            flags[(table.finding, r.kind, r.value, r.metric)] = (r.p_value, r.worse)
    out = []
    for cell in report.cells:
        kind, value = cell.stratum
        rel = cell.estimated.reliability
        reliable = rel.reliable if rel is not None else None
        reasons = Jsonb(list(rel.reasons) if rel is not None else [])
        tests = {t.metric: t for t in cell.degradation.tests}
        common = (model, cell.finding, w.kind, w.index, w.start, w.end, kind, value)
        counts = (cell.n_inferences, cell.realised.n, cell.realised.n_positive)
        est = cell.estimated.metrics()
        for metric, real in cell.realised.metrics().items():
            e = est.get(metric)
            test = tests.get(metric)
            ref = cell.reference.metrics()[metric].value
            sub_p, worse = flags.get((cell.finding, kind, value, metric), (None, False))
            status = cell.realised.status.value
            if metric == "auroc" and cell.degradation.status == Status.DRIFT:
                status = Status.DRIFT.value
            out.append((*common, metric, status, *counts, real.value, real.lower, real.upper,
                        real.n, e.value if e else None, e.lower if e else None,
                        e.upper if e else None, reliable if e else None, reasons,
                        ref, test.p_value if test else None,
                        bool(test.significant) if test else False, sub_p, worse,
                        Jsonb({"degradation_status": cell.degradation.status.value,
                               "complete": w.complete})))  # fmt: skip
        curve = [b.__dict__ for b in cell.realised.reliability]
        out.append((*common, "ece", cell.realised.status.value, *counts, cell.realised.ece,
                    None, None, cell.realised.n, None, None, None, None, Jsonb([]), None,
                    None, False, None, False, Jsonb({"reliability_curve": curve})))  # fmt: skip
    lat: dict[str, float | None] = {
        "label_coverage": report.coverage,
        "label_latency_median_h": report.latency_median_h,
        "label_latency_p90_h": report.latency_p90_h,
    }
    n = len(w.studies)
    labelled = sum(1 for s in w.studies if s.labels is not None)
    for metric, number in lat.items():
        out.append((model, "*", w.kind, w.index, w.start, w.end, "all", "all", metric,
                    Status.OK.value, n, labelled, 0, number, None, None, labelled, None, None,
                    None, None, Jsonb([]), None, None, False, None, False,
                    Jsonb({"complete": w.complete})))  # fmt: skip
    return out


def store(conn: psycopg.Connection, report: ModelReport) -> int:
    rows = [r for w in (report.reference, *report.windows) for r in _rows(report.model, w)]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO performance_results (model_name, finding, window_kind, window_index,
                   window_start, window_end, stratum_kind, stratum_value, metric, status,
                   n_inferences, n_labelled, n_positive, realised, realised_lower,
                   realised_upper, realised_n, estimated, estimated_lower, estimated_upper,
                   estimate_reliable, estimate_flags, reference_value, degradation_p, degraded,
                   subgroup_p, subgroup_worse, details)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (model_name, finding, window_kind, window_index, stratum_kind,
                            stratum_value, metric)
               DO UPDATE SET window_start = EXCLUDED.window_start,
                   window_end = EXCLUDED.window_end, status = EXCLUDED.status,
                   n_inferences = EXCLUDED.n_inferences, n_labelled = EXCLUDED.n_labelled,
                   n_positive = EXCLUDED.n_positive, realised = EXCLUDED.realised,
                   realised_lower = EXCLUDED.realised_lower,
                   realised_upper = EXCLUDED.realised_upper, realised_n = EXCLUDED.realised_n,
                   estimated = EXCLUDED.estimated, estimated_lower = EXCLUDED.estimated_lower,
                   estimated_upper = EXCLUDED.estimated_upper,
                   estimate_reliable = EXCLUDED.estimate_reliable,
                   estimate_flags = EXCLUDED.estimate_flags,
                   reference_value = EXCLUDED.reference_value,
                   degradation_p = EXCLUDED.degradation_p, degraded = EXCLUDED.degraded,
                   subgroup_p = EXCLUDED.subgroup_p, subgroup_worse = EXCLUDED.subgroup_worse,
                   details = EXCLUDED.details, computed_at = now()""",
            rows,
        )
    return len(rows)


# --- the whole run -------------------------------------------------------------------------


def run(
    conn: psycopg.Connection,
    *,
    model: str | None = None,
    config: PerformanceConfig | None = None,
    actor: str = ACTOR,
    alert: bool = True,
    observer: AlertObserver | None = None,
    fallback: FalseAlarmBudget | None = None,
) -> list[ModelReport]:
    """The performance watch for one model or all: corrections, evaluate, store, alert.

    A model whose reference is not yet labelled enough is skipped with a log line (and
    reported by `radwatch performance`), not an error for the others.
    """
    config = config or PerformanceConfig()
    fallback = fallback or FalseAlarmBudget()
    sync_label_corrections(conn, actor=actor)
    names = [model] if model else models(conn)
    reports = []
    for name in names:
        try:
            found = _run_model(conn, name, _budgeted(conn, name, config, fallback), actor=actor,
                               alert=alert, observer=observer, asked=model is not None)  # fmt: skip
        except psycopg.OperationalError:
            raise  # the database, not the model: the whole pass is retried
        except Exception as exc:
            if model:
                raise  # one model asked for by name: its error is the command's
            # Each model is judged in isolation: its error status is recorded and the models
            # after it still run.
            log.debug("performance pass of model %s failed", name, exc_info=True)
            model_status.guarded_failure(conn, name, "performance", exc, actor=actor)
            continue
        model_status.record_pass(conn, name, "performance", None, actor=actor)
        conn.commit()
        if found is not None:
            reports.append(found)
    return reports


def assess(
    conn: psycopg.Connection,
    *,
    model: str | None = None,
    config: PerformanceConfig | None = None,
    fallback: FalseAlarmBudget | None = None,
) -> list[ModelReport]:
    """What `run` would evaluate, read-only: no label corrections synced, nothing stored,
    audited or alerted (`radwatch performance` without `--record`). Same loading, reference
    choice, budget and evaluation as `run`; a model not evaluable yet is skipped (logged)."""
    config = config or PerformanceConfig()
    fallback = fallback or FalseAlarmBudget()
    reports = []
    for name in [model] if model else models(conn):
        chosen = _budgeted(conn, name, config, fallback)
        studies = load_studies(conn, name)
        if not studies and model:
            raise PerformanceWatchError(f"no inferences stored for model {name!r}")
        if chosen.reference_size is None:
            chosen = replace(chosen, reference=frozen_reference(conn, name))
        try:
            reports.append(evaluate_model(studies, name, chosen))
        except PerformanceWatchError as exc:
            if model:
                raise
            log.warning("performance watch skipped %s: %s", name, exc)
    return reports


def _budgeted(conn: psycopg.Connection, model: str, config: PerformanceConfig,
              fallback: FalseAlarmBudget) -> PerformanceConfig:  # fmt: skip
    """`config` with α, persistence and the CUSUM's ARL0 of the budget in force (the approved
    plan's, else `fallback`), unless it is not `budgeted`."""
    if not config.budgeted:
        return config
    found = budget.settings_for(conn, model, fallback)
    return replace(
        config,
        alpha=found["performance_alpha"],
        open_after=found["performance_open_after"],
        cusum_arl0=found["cusum_arl0"],
    )


def _run_model(
    conn: psycopg.Connection,
    name: str,
    config: PerformanceConfig,
    *,
    actor: str,
    alert: bool,
    observer: AlertObserver | None,
    asked: bool,
) -> ModelReport | None:
    """One model's pass: None when its reference is not labelled enough yet (logged)."""
    studies = load_studies(conn, name)
    if not studies and asked:
        raise PerformanceWatchError(f"no inferences stored for model {name!r}")
    if config.reference_size is None:  # no size asked for: the frozen drift reference
        config = replace(config, reference=frozen_reference(conn, name))
        if config.reference is None:
            log.info("model %s has no frozen drift reference: the performance reference is "
                     "its first inferences", name)  # fmt: skip
    try:
        report = evaluate_model(studies, name, config)
    except PerformanceWatchError as exc:
        log.warning("performance watch skipped %s: %s", name, exc)
        if asked:
            raise
        return None
    ref_hash = reference_hash(report.reference.window.studies)
    stored = store(conn, report)
    seq = sequential.evaluate(report, config) if config.cusum else None
    for chart in seq.designs if seq else ():
        if chart.design is None:
            log.info("model %s: no CUSUM chart %s (%s)", name, chart.name, chart.reason)
    trail.record(conn, actor=actor, action="performance.evaluate", entity_type="model",
                 entity_id=name, refs={"reference_sha256": ref_hash},
                 detail={"windows": len(report.windows), "rows": stored,
                         "window_kind": config.window_kind(),
                         "reference_size": len(report.reference.window.studies),
                         "reference": (report.reference_choice.as_dict()
                                       if report.reference_choice else None),
                         "calibration": config.calibration, "alpha": config.alpha,
                         "open_after": config.open_after, "budgeted": config.budgeted,
                         "margin": config.margin,
                         "cusum": seq.as_dict() if seq else None})  # fmt: skip
    # The plan in force says which performance signals alert (the rest are stored only)
    # and which metric stop rules apply.
    plan = plans.in_force(conn, name).plan
    changes: list[Any] = []
    if alert and "performance" in plan.signals:
        changes += observe.observe_alerts(conn, report, actor=actor, observer=observer,
                                          open_after=config.open_after)  # fmt: skip
    if alert and seq is not None and "performance_cusum" in plan.signals:
        changes += observe.observe_cusum(conn, name, seq, [w.window for w in report.windows],
                                         actor=actor, observer=observer)  # fmt: skip
    if alert:
        rules = [r for r in plan.stop_rules if r.metric]
        changes += observe.observe_floors(conn, report, rules, actor=actor, observer=observer)
    # The AI's calls against the reports' labels: stored every pass, alerted where planned.
    disc = discrepancy.run(conn, name, actor=actor)
    if alert and disc is not None and "discrepancy" in plan.signals:
        changes += observe.observe_discrepancy(conn, name, disc, actor=actor, observer=observer,
                                               open_after=config.open_after)  # fmt: skip
    conn.commit()
    return replace(report, alert_changes=tuple(changes))

"""Performance watch: join delayed radiologist labels to inferences, evaluate, store, alert.

Between PostgreSQL (inferences, labels) and the alert lifecycle: labels are joined to
inferences by (model, study pseudonym) whatever the arrival order (the `current_labels`
view keeps the latest read, `label_corrections` records changed reads), then per window,
stratum and finding the pure detectors give realised performance, a label-free CBPE
estimate, a degradation test against the reference and subgroup gaps; results are upserted
into `performance_results`, and completed windows feed `performance` alerts.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from detectors.drift.results import Status
from detectors.performance import cbpe
from detectors.performance.degradation import DegradationResult, compare
from detectors.performance.realised import (
    MinimumCounts,
    PerformanceError,
    PerformanceResult,
    evaluate,
)
from detectors.performance.subgroups import SubgroupTable, subgroup_table
from monitor import model_status
from monitor.audit import trail

log = logging.getLogger(__name__)

ACTOR = "radwatch.performance"
SIGNAL = "performance"
STRATUM_KINDS = ("site", "scanner", "sex", "age_band")
ALL = ("all", "all")


class PerformanceWatchError(RuntimeError):
    """The performance watch could not run (no such model, unusable reference)."""


@dataclass(frozen=True)
class PerformanceConfig:
    """How windows, references and tests are set up (defaults suit ~20% prevalence and a
    70% label share: a 500-study window then holds ~70 labelled positives)."""

    window: int = 500  # inferences per count window (ignored when `period` is set)
    period: str | None = None  # 'day' or 'week': calendar windows instead of counts
    reference_size: int = 1000  # the model's first N inferences form the reference
    alpha: float = 0.05  # per-window family-wise false-alarm rate, all strata and metrics
    # A drop smaller than this is not worth an alert; it also absorbs a reference that
    # happened to look a little better than the model really is.
    margin: float = 0.02
    subgroup_alpha: float = 0.05  # family-wise level of the subgroup-gap flags
    confidence: float = 0.95
    minimum: MinimumCounts = field(default_factory=MinimumCounts)
    calibration: cbpe.Method = "isotonic"
    strata: tuple[str, ...] = STRATUM_KINDS
    cbpe_draws: int = 400
    seed: int = 0

    def window_kind(self) -> str:
        return self.period if self.period else f"count:{self.window}"


@dataclass(frozen=True)
class Study:
    """One inference joined to the current read of its study (None while unread)."""

    event_id: str
    study: str
    occurred_at: datetime
    strata: dict[str, str]
    scores: dict[str, float]
    thresholds: dict[str, float]
    labels: dict[str, Any] | None
    label_at: datetime | None


@dataclass(frozen=True)
class Window:
    kind: str
    index: int
    start: datetime
    end: datetime
    studies: tuple[Study, ...]
    complete: bool


@dataclass(frozen=True)
class StratumFinding:
    """Everything computed for one (window, stratum, finding)."""

    stratum: tuple[str, str]
    finding: str
    n_inferences: int
    realised: PerformanceResult
    estimated: cbpe.CbpeResult
    degradation: DegradationResult
    reference: PerformanceResult


@dataclass(frozen=True)
class WindowReport:
    window: Window
    coverage: float
    latency_median_h: float | None
    latency_p90_h: float | None
    cells: tuple[StratumFinding, ...]
    subgroups: tuple[SubgroupTable, ...]

    def cell(self, stratum: tuple[str, str], finding: str) -> StratumFinding | None:
        for c in self.cells:
            if c.stratum == stratum and c.finding == finding:
                return c
        return None


@dataclass(frozen=True)
class ModelReport:
    model: str
    findings: tuple[str, ...]
    reference: WindowReport
    windows: tuple[WindowReport, ...]
    alert_changes: tuple[Any, ...] = ()


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


# --- windows -----------------------------------------------------------------------------


def make_windows(studies: Sequence[Study], config: PerformanceConfig) -> list[Window]:
    """Count windows of `config.window` inferences, or calendar day/week windows."""
    kind = config.window_kind()
    if not studies:
        return []
    if config.period is None:
        out = []
        for index, start in enumerate(range(0, len(studies), config.window)):
            chunk = tuple(studies[start : start + config.window])
            out.append(Window(kind, index, chunk[0].occurred_at, chunk[-1].occurred_at, chunk,
                              len(chunk) == config.window))  # fmt: skip
        return out
    if config.period not in ("day", "week"):
        raise PerformanceWatchError(f"period must be 'day' or 'week', got {config.period!r}")
    length = timedelta(days=1 if config.period == "day" else 7)
    first = studies[0].occurred_at
    origin = first.replace(hour=0, minute=0, second=0, microsecond=0)
    if config.period == "week":
        origin -= timedelta(days=origin.weekday())
    groups: dict[int, list[Study]] = defaultdict(list)
    for s in studies:
        groups[int((s.occurred_at - origin) / length)].append(s)
    last = max(groups)
    return [Window(kind, i, origin + i * length, origin + (i + 1) * length, tuple(groups[i]),
                   i != last) for i in sorted(groups)]  # fmt: skip


# --- evaluation --------------------------------------------------------------------------


def _binary_label(labels: dict[str, Any] | None, finding: str) -> int | None:
    if not labels or finding not in labels:
        return None
    value = labels[finding]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    return None


def _arrays(studies: Iterable[Study], finding: str):
    """Scores and thresholds of every study with a score for the finding, and the labelled
    subset (labels, scores, thresholds)."""
    s_all, t_all, y_l, s_l, t_l = [], [], [], [], []
    for st in studies:
        if finding not in st.scores:
            continue
        thr = st.thresholds.get(finding, 0.5)
        s_all.append(st.scores[finding])
        t_all.append(thr)
        y = _binary_label(st.labels, finding)
        if y is not None:
            y_l.append(y)
            s_l.append(st.scores[finding])
            t_l.append(thr)
    f = np.asarray
    return f(s_all, float), f(t_all, float), f(y_l, np.int8), f(s_l, float), f(t_l, float)


def _deployed_threshold(thresholds: np.ndarray) -> float:
    # The operating point the model shipped with; if it changed mid-window, the most common.
    if thresholds.size == 0:
        return 0.5
    values, counts = np.unique(thresholds, return_counts=True)
    return float(values[np.argmax(counts)])


def _latency_hours(studies: Sequence[Study]) -> tuple[float, float | None, float | None]:
    labelled = [s for s in studies if s.labels is not None and s.label_at is not None]
    coverage = len(labelled) / len(studies) if studies else 0.0
    if not labelled:
        return coverage, None, None
    assert all(s.label_at for s in labelled)
    hours = np.array([(s.label_at - s.occurred_at).total_seconds() / 3600 for s in labelled  # type: ignore[operator]
                      ])  # fmt: skip
    return coverage, float(np.median(hours)), float(np.percentile(hours, 90))


def _strata(studies: Sequence[Study], kinds: Sequence[str]) -> dict[tuple[str, str], list[Study]]:
    out: dict[tuple[str, str], list[Study]] = {ALL: list(studies)}
    for kind in kinds:
        for s in studies:
            out.setdefault((kind, s.strata[kind]), []).append(s)
    return out


def _findings(studies: Sequence[Study]) -> tuple[str, ...]:
    return tuple(sorted({f for s in studies for f in s.scores}))


def _evaluate_window(
    window: Window,
    findings: Sequence[str],
    config: PerformanceConfig,
    calibrators: dict[str, cbpe.Calibrator],
    reference: WindowReport | None,
) -> WindowReport:
    strata = _strata(window.studies, config.strata)
    cells: list[StratumFinding] = []
    # Bonferroni over the strata tested in this window: one family-wise level per window.
    level = config.alpha / max(len(strata), 1)
    for finding in findings:
        for stratum, studies in strata.items():
            s_all, t_all, y, s_l, t_l = _arrays(studies, finding)
            if s_all.size == 0:
                continue
            thr = _deployed_threshold(t_all)
            realised = evaluate(y, s_l, thr, finding=finding, confidence=config.confidence,
                                minimum=config.minimum)  # fmt: skip
            estimated = cbpe.estimate(
                calibrators[finding], s_all, thr, finding=finding, labelled=(y, s_l),
                confidence=config.confidence, draws=config.cbpe_draws, seed=config.seed,
                min_studies=config.minimum.studies,
            )  # fmt: skip
            ref = realised
            if reference is not None:
                ref_cell = reference.cell(stratum, finding) or reference.cell(ALL, finding)
                if ref_cell is not None and ref_cell.realised.status == Status.OK:
                    ref = ref_cell.realised
                elif ref_cell is not None:
                    overall = reference.cell(ALL, finding)
                    ref = overall.realised if overall is not None else ref_cell.realised
            degradation = compare(ref, realised, alpha=level, margin=config.margin)
            cells.append(StratumFinding(stratum, finding, int(s_all.size), realised,
                                        estimated, degradation, ref))  # fmt: skip
    tables = []
    for finding in findings:
        for kind in config.strata:
            rows = [s for s in window.studies if finding in s.scores
                    and _binary_label(s.labels, finding) is not None]  # fmt: skip
            if not rows:
                continue
            tables.append(subgroup_table(
                [int(_binary_label(s.labels, finding) or 0) for s in rows],
                [s.scores[finding] for s in rows], [s.strata[kind] for s in rows],
                _deployed_threshold(np.array([s.thresholds.get(finding, 0.5) for s in rows])),
                kind=kind, finding=finding, alpha=config.subgroup_alpha,
                confidence=config.confidence, minimum=config.minimum))  # fmt: skip
    coverage, median_h, p90_h = _latency_hours(window.studies)
    return WindowReport(window, coverage, median_h, p90_h, tuple(cells), tuple(tables))


def _fit_calibrators(
    reference: Sequence[Study], findings: Sequence[str], method: cbpe.Method
) -> dict[str, cbpe.Calibrator]:
    out = {}
    for finding in findings:
        _, _, y, s_l, _ = _arrays(reference, finding)
        try:
            out[finding] = cbpe.fit_calibrator(y, s_l, method)
        except PerformanceError as exc:
            raise PerformanceWatchError(
                f"reference for finding {finding!r} cannot calibrate CBPE: {exc}"
            ) from exc
    return out


def reference_hash(studies: Sequence[Study]) -> str:
    """Content hash of the reference: its inference ids and the reads they were joined to."""
    h = hashlib.sha256()
    for s in studies:
        h.update(json.dumps([s.event_id, s.labels], sort_keys=True).encode())
    return h.hexdigest()


def evaluate_model(studies: Sequence[Study], model: str, config: PerformanceConfig) -> ModelReport:
    """Pure evaluation of one model's joined studies (no database): reference, windows."""
    if len(studies) < config.reference_size:
        raise PerformanceWatchError(
            f"model {model!r} has {len(studies)} inferences; the performance reference needs "
            f"the first {config.reference_size}"
        )
    findings = _findings(studies)
    ref_studies = tuple(studies[: config.reference_size])
    calibrators = _fit_calibrators(ref_studies, findings, config.calibration)
    ref_window = Window("reference", 0, ref_studies[0].occurred_at, ref_studies[-1].occurred_at,
                        ref_studies, True)  # fmt: skip
    reference = _evaluate_window(ref_window, findings, config, calibrators, None)
    monitored = make_windows(studies[config.reference_size :], config)
    windows = tuple(_evaluate_window(w, findings, config, calibrators, reference)
                    for w in monitored)  # fmt: skip
    return ModelReport(model, findings, reference, windows)


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


# --- alerts and the whole run ------------------------------------------------------------

AlertObserver = Callable[..., Any]


def _default_observer() -> AlertObserver:
    # The one alert lifecycle shared with drift (issue 5's monitor/alerts/lifecycle.py), imported at
    # call time so the pure evaluation above works without it.
    alerts = importlib.import_module("monitor.alerts.lifecycle")
    return alerts.observe


def _window_decisions(
    report: ModelReport,
) -> list[tuple[WindowReport, tuple[str, str], bool, dict]]:
    """Per completed window and stratum: (window, stratum, firing, details), skipping cells
    whose labels are still too few (insufficient data neither fires nor resolves)."""
    out = []
    for wr in report.windows:
        if not wr.window.complete:
            continue
        by_stratum: dict[tuple[str, str], list[StratumFinding]] = defaultdict(list)
        for cell in wr.cells:
            by_stratum[cell.stratum].append(cell)
        for stratum, cells in by_stratum.items():
            tested = [c for c in cells if c.degradation.status != Status.INSUFFICIENT_DATA]
            if not tested:
                continue
            degraded = [c for c in tested if c.degradation.degraded]
            details = {
                "window_kind": wr.window.kind, "window_index": wr.window.index,
                "window_start": wr.window.start.isoformat(),
                "label_coverage": round(wr.coverage, 4),
                "findings": {c.finding: _cell_summary(c) for c in tested},
                "degraded_findings": [c.finding for c in degraded],
            }  # fmt: skip
            out.append((wr, stratum, bool(degraded), details))
    return out


def _cell_summary(cell: StratumFinding) -> dict[str, Any]:
    worst = cell.degradation.worst()
    rel = cell.estimated.reliability
    return {
        "status": cell.degradation.status.value,
        "n_labelled": cell.realised.n,
        "auroc": cell.realised.auroc.as_dict(),
        "reference_auroc": cell.reference.auroc.value,
        "sensitivity": cell.realised.sensitivity.as_dict(),
        "specificity": cell.realised.specificity.as_dict(),
        "estimated_auroc": cell.estimated.auroc.as_dict(),
        "estimate_reliable": rel.reliable if rel is not None else None,
        "worst_test": None if worst is None else {
            "metric": worst.metric, "reference": worst.reference, "window": worst.window,
            "difference": worst.difference, "p_value": worst.p_value},
    }  # fmt: skip


def observe_safe(value: Any) -> Any:
    """JSON-ready copy (jsonb rejects NaN): the alert lifecycle's own sanitiser."""
    return importlib.import_module("monitor.alerts.lifecycle").audit_safe(value)


def observe_alerts(
    conn: psycopg.Connection,
    report: ModelReport,
    *,
    actor: str = ACTOR,
    observer: AlertObserver | None = None,
) -> list[Any]:
    """Feed each newly decidable window, in order, to the alert lifecycle; once per window."""
    observe = observer or _default_observer()
    changes = []
    for wr, (kind, value), firing, details in _window_decisions(report):
        w = wr.window
        with conn.transaction():
            last = conn.execute(
                """SELECT max(window_index) FROM performance_observations
                   WHERE model_name = %s AND stratum_kind = %s AND stratum_value = %s
                     AND window_kind = %s""",
                (report.model, kind, value, w.kind),
            ).fetchone()
            if last and last[0] is not None and int(last[0]) >= w.index:
                continue
            details = observe_safe(details)
            conn.execute(
                """INSERT INTO performance_observations (model_name, stratum_kind, stratum_value,
                       window_kind, window_index, window_end, firing, details)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (report.model, kind, value, w.kind, w.index, w.end, firing, Jsonb(details)),
            )
            trail.record(conn, actor=actor, action="performance.window",
                         entity_type="performance_window",
                         entity_id=f"{report.model}/{w.kind}/{w.index}/{kind}={value}",
                         outcome="degraded" if firing else "ok", refs={"model": report.model},
                         detail=details)  # fmt: skip
            change = observe(conn, model=report.model, stratum_kind=kind, stratum_value=value,
                             signal=SIGNAL, firing=firing, details=details, window_end=w.end,
                             actor=actor)  # fmt: skip
            if change is not None:
                changes.append(change)
    return changes


def run(
    conn: psycopg.Connection,
    *,
    model: str | None = None,
    config: PerformanceConfig | None = None,
    actor: str = ACTOR,
    alert: bool = True,
    observer: AlertObserver | None = None,
) -> list[ModelReport]:
    """The performance watch for one model or all: corrections, evaluate, store, alert.

    A model whose reference is not yet labelled enough is skipped with a log line (and
    reported by `radwatch performance`), not an error for the others.
    """
    config = config or PerformanceConfig()
    sync_label_corrections(conn, actor=actor)
    names = [model] if model else models(conn)
    reports = []
    for name in names:
        try:
            found = _run_model(conn, name, config, actor=actor, alert=alert, observer=observer,
                               asked=model is not None)  # fmt: skip
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
    try:
        report = evaluate_model(studies, name, config)
    except PerformanceWatchError as exc:
        log.warning("performance watch skipped %s: %s", name, exc)
        if asked:
            raise
        return None
    ref_hash = reference_hash(report.reference.window.studies)
    stored = store(conn, report)
    trail.record(conn, actor=actor, action="performance.evaluate", entity_type="model",
                 entity_id=name, refs={"reference_sha256": ref_hash},
                 detail={"windows": len(report.windows), "rows": stored,
                         "window_kind": config.window_kind(),
                         "reference_size": config.reference_size,
                         "calibration": config.calibration, "alpha": config.alpha,
                         "margin": config.margin})  # fmt: skip
    changes = observe_alerts(conn, report, actor=actor, observer=observer) if alert else []
    conn.commit()
    return ModelReport(name, report.findings, report.reference, report.windows, tuple(changes))

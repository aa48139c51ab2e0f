"""Performance evaluation: windows of joined studies in, per-stratum performance reports out.

Pure computation between the label join (monitor/performance/watch.py reads the rows) and
storage/alerts (watch.py again): given one model's inferences with the current read of each,
it cuts windows, fits CBPE calibrators on the reference, and per window, stratum and finding
gives realised performance, a label-free estimate, a degradation test against the reference
and subgroup gaps; `window_decisions` says which completed windows fire. No database here.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

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
from monitor.errors import RadwatchError

STRATUM_KINDS = ("site", "scanner", "sex", "age_band")
ALL = ("all", "all")


class PerformanceWatchError(RadwatchError, RuntimeError):
    """The performance watch could not run (no such model, unusable reference)."""


DEFAULT_REFERENCE_SIZE = 1000  # first N inferences, for a model with no frozen reference


@dataclass(frozen=True)
class ReferenceChoice:
    """Which studies are the performance reference: the members of the model's frozen drift
    reference (`frozen`), its first `size` inferences when asked for (`size`), or the same
    when it has no frozen reference (`fallback`)."""

    kind: str  # 'frozen' | 'size' | 'fallback'
    size: int  # studies in the reference: the frozen one's members, or N
    drift_reference_id: int | None = None
    event_ids: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "size": self.size,
                "drift_reference_id": self.drift_reference_id}  # fmt: skip


@dataclass(frozen=True)
class PerformanceConfig:
    """How windows, references and tests are set up (defaults suit ~20% prevalence and a
    70% label share: a 500-study window then holds ~70 labelled positives)."""

    window: int = 500  # inferences per count window (ignored when `period` is set)
    period: str | None = None  # 'day' or 'week': calendar windows instead of counts
    # A number: the model's first N inferences form the reference (asked for). None: the
    # model's frozen drift reference, which watch.py puts in `reference`, so that drift and
    # performance judge a window against the same studies; without one, the first
    # DEFAULT_REFERENCE_SIZE inferences (a fallback, said so in the report).
    reference_size: int | None = None
    reference: ReferenceChoice | None = None
    alpha: float = 0.05  # per-window family-wise false-alarm rate, all strata and metrics
    # True: the watch takes α, the persistence and the CUSUM's ARL0 from the false-alarm
    # budget in force (monitor/alerts/budget.py); False: these fields as given.
    budgeted: bool = True
    open_after: int = 2  # consecutive degraded windows before an alert opens
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
    # The sequential channel (monitor/performance/sequential.py): Bernoulli CUSUMs of the
    # AI-vs-label discrepancy, misses and false calls, read in label-arrival order.
    cusum: bool = True
    # Labelled studies between false alarms of the CUSUM channel as a whole (all its charts);
    # detectors/false_alarm_budget.py `derive(...).cusum_arl0` states it from the budget.
    cusum_arl0: float = 50_400.0
    # The rise each chart is designed to catch: the rate doubles. Mayo Clinic's PE-AI monitor
    # (J Am Coll Radiol 2025) saw a 2-3% specificity drop raise AI-vs-radiologist
    # discrepancies 2-3-fold.
    cusum_ratio: float = 2.0

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
    reference_choice: ReferenceChoice | None = None


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


def binary_label(labels: dict[str, Any] | None, finding: str) -> int | None:
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
        y = binary_label(st.labels, finding)
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
                    and binary_label(s.labels, finding) is not None]  # fmt: skip
            if not rows:
                continue
            tables.append(subgroup_table(
                [int(binary_label(s.labels, finding) or 0) for s in rows],
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


def choose_reference(config: PerformanceConfig) -> ReferenceChoice:
    """A size asked for wins; else the frozen drift reference; else the first-N fallback."""
    if config.reference_size is not None:
        return ReferenceChoice("size", config.reference_size)
    if config.reference is not None:
        return config.reference
    return ReferenceChoice("fallback", DEFAULT_REFERENCE_SIZE)


def split_reference(
    studies: Sequence[Study], choice: ReferenceChoice, model: str
) -> tuple[tuple[Study, ...], Sequence[Study]]:
    """(reference studies, monitored studies), both in event-time order."""
    if choice.kind == "frozen":
        at = [i for i, s in enumerate(studies) if s.event_id in choice.event_ids]
        if not at:
            raise PerformanceWatchError(
                f"model {model!r}: none of the {choice.size} events of frozen drift reference "
                f"#{choice.drift_reference_id} is stored"
            )
        # Monitoring starts after the reference's last event, as drift detection's cursor
        # does: an event before it that is not a member (before a reference period, or
        # arrived late) is in neither.
        return tuple(studies[i] for i in at), studies[at[-1] + 1 :]
    if len(studies) < choice.size:
        note = "" if choice.kind == "size" else " (no frozen drift reference)"
        raise PerformanceWatchError(
            f"model {model!r} has {len(studies)} inferences; the performance reference needs "
            f"the first {choice.size}{note}"
        )
    return tuple(studies[: choice.size]), studies[choice.size :]


def evaluate_model(studies: Sequence[Study], model: str, config: PerformanceConfig) -> ModelReport:
    """Pure evaluation of one model's joined studies (no database): reference, windows."""
    choice = choose_reference(config)
    ref_studies, after = split_reference(studies, choice, model)
    findings = _findings(studies)
    calibrators = _fit_calibrators(ref_studies, findings, config.calibration)
    ref_window = Window("reference", 0, ref_studies[0].occurred_at, ref_studies[-1].occurred_at,
                        ref_studies, True)  # fmt: skip
    reference = _evaluate_window(ref_window, findings, config, calibrators, None)
    monitored = make_windows(after, config)
    windows = tuple(_evaluate_window(w, findings, config, calibrators, reference)
                    for w in monitored)  # fmt: skip
    return ModelReport(model, findings, reference, windows, reference_choice=choice)


# --- decisions ---------------------------------------------------------------------------


def window_decisions(
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

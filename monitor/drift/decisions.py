"""The pure decisions of drift detection: what fires, where, since when, and how it reads.

Between the detectors (a fitted `DetectorSuite` scores one window: detectors/drift/suite.py)
and the scheduler's I/O (monitor/drift/scheduler.py stores results and drives alerts): per
stratum × signal whether a window fires, kept only where the shift is concentrated; the
change point an opening alert dates its onset from; the details the QA team reads. Results in,
decisions out; no database here.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from detectors.drift import changepoint
from detectors.drift.contract import ALL, Sample
from detectors.drift.results import DriftResult, FeatureFinding, Status
from detectors.drift.suite import DetectorSuite, StratumVerdict
from monitor.drift.reference import ReferenceInfo
from monitor.drift.windows import EventRow, to_sample

CONCENTRATION = 1.25  # a stratum alert needs this × the model-wide effect

Decision = tuple[str, str, str, bool, list[DriftResult]]  # kind, value, signal, firing, tests


def onset(suite: DetectorSuite, key: tuple[str, str], results: list[DriftResult], part: Sample,
          times: Sequence[datetime]) -> dict[str, Any]:  # fmt: skip
    """Change point of the stratum's studies `part` (event times `times`), from the firing
    windows and the one before them (Hinkley 1970); {} when too short or no shift is found."""
    series = indicator(suite, key, results, part)
    if series is None or len(series) < 10:
        return {}
    cp = changepoint.mean_shift(series)
    if cp is None:
        return {}
    return {"onset": times[cp.index], "onset_statistic": round(cp.statistic, 3),
            "onset_before_mean": cp.before_mean, "onset_after_mean": cp.after_mean,
            "onset_series": _series_name(results)}  # fmt: skip


def indicator(suite: DetectorSuite, key: tuple[str, str], results: list[DriftResult],
              part: Sample) -> np.ndarray | None:  # fmt: skip
    """Per-study number for the change point, from the most significant finding.

    The detector that produced the finding says what that number is (WindowDetector.indicator):
    a new test gets an onset without any change here.
    """
    fitted = suite.strata.get(key)
    if fitted is None or not results:
        return None
    best = min(results, key=lambda r: r.adjusted_p if r.adjusted_p is not None else 1.0)
    detector = next((d for d in fitted.detectors if d.name == best.detector), None)
    return None if detector is None else detector.indicator(part, best)


def _series_name(results: list[DriftResult]) -> str:
    best = min(results, key=lambda r: r.adjusted_p if r.adjusted_p is not None else 1.0)
    top = best.top_features(1)
    return f"{best.detector}:{top[0].feature}" if top else best.detector


def decide(
    suite: DetectorSuite, rows: Sequence[EventRow], seq: int, *, alpha: float | None = None
) -> tuple[list[StratumVerdict], list[Decision]]:
    """One window's verdicts and its firing decisions per stratum × signal (pure); `alpha`:
    the budget's level (None: the suite's own)."""
    verdicts = suite.score(to_sample(rows), seed=seq, alpha=alpha)
    return verdicts, localise(stratum_decisions(verdicts), verdicts)


def stratum_decisions(verdicts: list[StratumVerdict]) -> list[Decision]:
    """(kind, value, signal, firing, results) for each stratum × signal that was tested.

    A signal whose tests all lacked data neither fires nor counts as quiet.
    """
    out = []
    for v in verdicts:
        by_signal: dict[str, list[DriftResult]] = defaultdict(list)
        for r in v.results:
            if r.status in (Status.OK, Status.DRIFT):
                by_signal[r.signal].append(r)
        for signal, results in sorted(by_signal.items()):
            fire = any(r.status == Status.DRIFT for r in results)
            out.append((v.kind, v.value, signal, fire, results))
    return out


def localise(decisions: list[tuple[str, str, str, bool, list[DriftResult]]],
             verdicts: list[StratumVerdict]) -> list[tuple[str, str, str, bool, list[DriftResult]]]:  # fmt: skip
    """Keep a stratum's firing only where the shift is concentrated.

    A shift at one site also moves every other stratum that contains that site's studies
    (sex, age band, …). A stratum-level firing is kept only where the stratum's unified drift
    score exceeds the whole model's and, when the whole model fires for the same signal,
    where the shift is clearly larger than model-wide (effect ×1.25), so the QA team gets "south-clinic", not every subgroup that merely contains
    south-clinic studies; the whole-model alert always stands.
    """
    whole = {signal: (fire, strength(results)) for kind, value, signal, fire, results
             in decisions if (kind, value) == ALL}  # fmt: skip
    scores = {(v.kind, v.value): v.drift_score for v in verdicts}
    whole_score = scores.get(ALL, math.nan)
    out = []
    for kind, value, signal, fire, results in decisions:
        whole_fire, whole_strength = whole.get(signal, (False, 0.0))
        if fire and (kind, value) != ALL:
            if math.isfinite(whole_score):
                fire = scores.get((kind, value), math.nan) > whole_score
            if whole_fire:
                fire = fire and strength(results) > CONCENTRATION * whole_strength
        out.append((kind, value, signal, fire, results))
    return out


def strength(results: list[DriftResult]) -> float:
    """Size of a signal's shift, comparable across sample sizes: the largest feature effect
    (KS D, Cramér's V, share of never-seen values) or MMD² itself (not its z-score)."""
    values = [f.effect_size for r in results for f in r.features] + [
        r.statistic for r in results if not r.features
    ]
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0)


def summaries(suite: DetectorSuite, key: tuple[str, str],
              results: list[DriftResult]) -> dict[str, str]:  # fmt: skip
    """The one-line readings whole-signal tests give of their results (WindowDetector.summary)."""
    fitted = suite.strata.get(key)
    by_name = {d.name: d for d in fitted.detectors} if fitted else {}
    out: dict[str, str] = {}
    for r in results:
        detector = by_name.get(r.detector)
        text = detector.summary(r) if detector is not None else None
        if text:
            out[r.detector] = text
    return out


def alert_details(kind: str, value: str, signal: str, results: list[DriftResult],
                   verdict: StratumVerdict | None, info: ReferenceInfo,
                   start: datetime, end: datetime, top_k: int,
                   test_summaries: dict[str, str] | None = None,
                   alpha: float | None = None) -> dict[str, Any]:  # fmt: skip
    """What the QA team reads: what moved, where, how much, examples. `alpha`, the level the
    window was judged at, is kept so an explanation lists exactly the contributors below it
    (monitor.alerts.lifecycle.significant_features)."""
    test_summaries = test_summaries or {}
    top = [{"feature": f.feature, "test": f.test, "reference": f.reference,
            "current": f.current, "p_value": f.p_value, "adjusted_p": f.adjusted_p,
            "effect_size": f.effect_size, "new_values": list(f.new_values),
            "summary": _summary(f)} for f in top_features(results, top_k)]  # fmt: skip
    atypical: list[str] = []
    for r in sorted(results, key=lambda r: r.adjusted_p if r.adjusted_p is not None else 1):
        atypical += [i for i in r.atypical_ids if i not in atypical]
    return {
        "signal": signal,
        "stratum": f"{kind}={value}",
        "alpha": alpha,
        "window_start": start, "window_end": end,
        "n_window": verdict.n_window if verdict else None,
        "drift_score": verdict.drift_score if verdict else None,
        "tests": [{"detector": r.detector, "p_value": r.p_value, "adjusted_p": r.adjusted_p,
                   "effect_size": r.effect_size, "statistic": r.statistic,
                   "n_reference": r.n_reference, "n_window": r.n_window,
                   "status": r.status.value, "summary": test_summaries.get(r.detector)}
                  for r in results],
        "top_features": top,
        "atypical_ids": atypical[:5],
        "reference_id": info.id, "reference_hash": info.content_hash,
        "detector_fingerprint": info.detector_fingerprint,
    }  # fmt: skip


def top_features(results: Sequence[DriftResult], k: int) -> list[FeatureFinding]:
    """The features an alert leads with: smallest adjusted p, then largest effect."""
    return sorted(
        (f for r in results for f in r.features),
        key=lambda f: (f.adjusted_p if f.adjusted_p is not None else 1.0, -abs(f.effect_size)),
    )[:k]


def _summary(f: Any) -> str:
    if f.test in ("chi2", "new_value"):
        ref = f.reference.split(": ", 1)[-1]
        return f"{f.feature}: {f.current}, {ref}"
    return f"{f.feature}: {f.current} vs {f.reference} in reference (KS D={f.statistic:.2f})"

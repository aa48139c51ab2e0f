"""Degradation detection: is a window's realised performance worse than the reference's?

Pure computation after detectors/performance/realised.py: two `PerformanceResult`s in (reference and
window), a frozen `DegradationResult` out, with a controlled per-window false-alarm rate
(one-sided tests, Bonferroni over the metrics tested). The sequential alternative between
windows, a Bernoulli CUSUM designed from a stated in-control run length, is
detectors/performance/cusum.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from detectors.drift.results import Status
from detectors.performance.realised import PerformanceError, PerformanceResult, normal_sf

DEFAULT_METRICS = ("auroc", "sensitivity", "specificity")


@dataclass(frozen=True)
class MetricTest:
    """One-sided test of H0: window ≥ reference − margin against H1: window is worse."""

    metric: str
    reference: float
    window: float
    difference: float  # window − reference (negative: worse)
    z: float
    p_value: float
    significant: bool


@dataclass(frozen=True)
class DegradationResult:
    status: Status  # drift: degraded; ok; insufficient_data: too few labels in the window
    alpha: float
    margin: float
    tests: tuple[MetricTest, ...]
    reason: str | None = None

    @property
    def degraded(self) -> bool:
        return self.status == Status.DRIFT

    def worst(self) -> MetricTest | None:
        return min(self.tests, key=lambda t: t.p_value) if self.tests else None


def _variance(result: PerformanceResult, metric: str) -> float | None:
    """Sampling variance of a metric: DeLong for AUROC, binomial for the rates."""
    if metric == "auroc":
        var = result.auroc_variance
        if var is not None and var <= 0.0 and result.auroc.value is not None:
            # Perfect separation: DeLong says 0. Use the Agresti–Coull binomial variance with
            # the smaller class as trials, so 1.000 vs 0.999 is not "infinitely significant".
            ne = min(result.n_positive, result.n_negative)
            p = (result.auroc.value * ne + 2) / (ne + 4)
            return p * (1 - p) / (ne + 4)
        return var
    est = result.metrics()[metric]
    if est.value is None or est.n == 0:
        return None
    # Shrink p(1−p) away from 0 with the Agresti–Coull adjustment so a window with 100%
    # sensitivity does not claim zero variance.
    p = (est.value * est.n + 2) / (est.n + 4)
    return p * (1 - p) / (est.n + 4)


def compare(
    reference: PerformanceResult,
    window: PerformanceResult,
    *,
    alpha: float = 0.01,
    margin: float = 0.0,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
) -> DegradationResult:
    """One-sided z-tests (window worse than reference by more than `margin`) on the metrics
    both results show; the family-wise false-alarm rate per window is ≤ `alpha` under the
    null (Bonferroni). Variances of reference and window add: they are independent samples.
    """
    if not 0 < alpha < 1:
        raise PerformanceError(f"alpha must be in (0, 1), got {alpha}")
    if reference.status != Status.OK:
        return DegradationResult(Status.INSUFFICIENT_DATA, alpha, margin, (),
                                 f"reference: {reference.reason}")  # fmt: skip
    # A window short of positives can still show a specificity drop (and vice versa): each
    # metric is tested when its own denominator reached the minimum (Estimate.shown).
    candidates = []
    for metric in metrics:
        ref, win = reference.metrics()[metric], window.metrics()[metric]
        v_ref, v_win = _variance(reference, metric), _variance(window, metric)
        if ref.value is None or win.value is None or v_ref is None or v_win is None:
            continue
        candidates.append((metric, ref.value, win.value, v_ref + v_win))
    if not candidates:
        return DegradationResult(Status.INSUFFICIENT_DATA, alpha, margin, (),
                                 window.reason or "no metric shown in both reference and window")  # fmt: skip
    level = alpha / len(candidates)
    tests = []
    for metric, ref_v, win_v, var in candidates:
        z = (ref_v - margin - win_v) / math.sqrt(max(var, 1e-12))
        p = float(normal_sf(z))
        tests.append(MetricTest(metric, ref_v, win_v, win_v - ref_v, float(z), p, p < level))
    degraded = any(t.significant for t in tests)
    return DegradationResult(Status.DRIFT if degraded else Status.OK, alpha, margin, tuple(tests))

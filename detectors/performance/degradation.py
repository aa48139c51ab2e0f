"""Degradation detection: is a window's realised performance worse than the reference's?

Pure computation after detectors/performance/realised.py: two `PerformanceResult`s in (reference and
window), a frozen `DegradationResult` out, with a controlled per-window false-alarm rate
(one-sided tests, Bonferroni over the metrics tested). A Bernoulli CUSUM on the
AI–radiologist error stream, designed for a stated in-control run length, gives an online
alternative between windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

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


@dataclass(frozen=True)
class BernoulliCusum:
    """Bernoulli CUSUM on the error stream (Reynolds & Stoumbos 1999): detects a rise of the
    per-study error rate from p0 to p1. Scores are the log-likelihood ratios, scaled to
    integers so the in-control average run length is exact by the Markov-chain method of
    Brook & Evans (1972)."""

    p0: float
    p1: float
    scale: float
    up: int  # increment on an error
    down: int  # decrement (positive number) on a correct call
    limit: int  # alarm when the statistic reaches this
    arl0: float  # in-control average run length (studies between false alarms)

    @classmethod
    def design(cls, p0: float, p1: float, arl0: float = 2000.0, resolution: int = 20):
        if not 0 < p0 < p1 < 1:
            raise PerformanceError(f"need 0 < p0 < p1 < 1, got {p0}, {p1}")
        w_up = math.log(p1 / p0)
        w_down = -math.log((1 - p1) / (1 - p0))
        scale = resolution / min(w_up, w_down)
        up, down = round(w_up * scale), round(w_down * scale)
        lo, hi = 1, up + 1
        while _arl(p0, up, down, hi) < arl0:
            lo, hi = hi, hi * 2
            if hi > 200_000:
                raise PerformanceError("CUSUM limit out of range; lower arl0")
        while lo < hi:  # smallest limit whose in-control ARL reaches the target
            mid = (lo + hi) // 2
            if _arl(p0, up, down, mid) >= arl0:
                hi = mid
            else:
                lo = mid + 1
        return cls(p0, p1, scale, up, down, lo, _arl(p0, up, down, lo))

    def run(self, errors: ArrayLike) -> int | None:
        """Index of the first study at which the CUSUM alarms, or None."""
        e = np.asarray(errors, dtype=bool)
        c = 0
        for i, err in enumerate(e):
            c = max(0, c + self.up) if err else max(0, c - self.down)
            if c >= self.limit:
                return i
        return None


def _arl(p: float, up: int, down: int, limit: int) -> float:
    """Average run length from 0 of the integer CUSUM with error probability p."""
    q = np.zeros((limit, limit))
    for state in range(limit):
        nxt = state + up
        if nxt < limit:
            q[state, nxt] += p
        q[state, max(0, state - down)] += 1 - p
    a = np.linalg.solve(np.eye(limit) - q, np.ones(limit))
    return float(a[0])

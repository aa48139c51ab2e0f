"""Realised performance of a binary finding once radiologists' labels have arrived.

Pure computation between the label join (monitor/performance/watch.py) and storage/alerts: labels
and scores in, a frozen `PerformanceResult` out (AUROC with a DeLong interval, operating-point
rates with Wilson intervals, calibration, positive and discordance rates). No I/O.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.drift.results import Status
from detectors.errors import DetectorError


class PerformanceError(DetectorError, ValueError):
    """Inputs a performance statistic cannot be computed from (shape, range, NaN)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its confidence interval; `value` is None below the minimum count.

    `n` is the count the estimate rests on (positives for sensitivity, predicted positives for
    PPV, …) so a reader can judge it; an estimate that is not shown keeps its `n`.
    """

    value: float | None
    lower: float | None = None
    upper: float | None = None
    n: int = 0

    @property
    def shown(self) -> bool:
        return self.value is not None

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "lower": self.lower, "upper": self.upper, "n": self.n}


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of the reliability curve (calibration diagram)."""

    lower: float
    upper: float
    count: int
    mean_score: float
    observed_rate: float


@dataclass(frozen=True)
class MinimumCounts:
    """Counts below which a number is not shown (it would mislead more than inform).

    Defaults follow common practice for binomial intervals: at least 10 events of each class
    (Peduzzi-style rule of thumb) and 30 studies in all.
    """

    studies: int = 30
    positives: int = 10
    negatives: int = 10
    predicted_positives: int = 10
    predicted_negatives: int = 10


@dataclass(frozen=True)
class PerformanceResult:
    """Realised performance of one finding on one set of labelled studies."""

    status: Status
    finding: str
    threshold: float
    confidence: float
    n: int
    n_positive: int
    n_negative: int
    prevalence: Estimate
    auroc: Estimate
    auroc_variance: float | None
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    positive_rate: Estimate
    discordance_rate: Estimate
    ece: float | None
    reliability: tuple[ReliabilityBin, ...] = field(default=())
    reason: str | None = None

    def metrics(self) -> dict[str, Estimate]:
        """The interval-carrying metrics by name (what storage and tables iterate over)."""
        return {
            "auroc": self.auroc,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.ppv,
            "npv": self.npv,
            "positive_rate": self.positive_rate,
            "discordance_rate": self.discordance_rate,
            "prevalence": self.prevalence,
        }


@functools.lru_cache(maxsize=64)
def _z(confidence: float) -> float:
    # statistics.NormalDist rather than scipy.stats.norm: ~1000× cheaper per call, and this
    # runs for every interval of every stratum of every window.
    if not 0.0 < confidence < 1.0:
        raise PerformanceError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def normal_sf(z: float) -> float:
    """Upper tail of the standard normal (one-sided p-value of a z statistic)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def as_binary_inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int8], NDArray]:
    """Validate and convert labels (0/1) and scores (finite floats) to arrays of equal length."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise PerformanceError(f"labels {y.shape} and scores {s.shape} must be 1-D, same length")
    if not np.all(np.isfinite(s)):
        raise PerformanceError("scores contain NaN or infinity")
    if y.size and not np.isin(y, (0, 1)).all():
        raise PerformanceError("labels must be 0 or 1")
    return y.astype(np.int8), s


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001
    recommend it over the Wald interval, whose coverage collapses near 0 and 1)."""
    if trials <= 0:
        raise PerformanceError("Wilson interval needs at least one trial")
    if not 0 <= successes <= trials:
        raise PerformanceError(f"successes {successes} outside 0..{trials}")
    z = _z(confidence)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, trials: int, minimum: int, confidence: float) -> Estimate:
    if trials < max(minimum, 1):
        return Estimate(None, n=trials)
    lo, hi = wilson_interval(successes, trials, confidence)
    return Estimate(successes / trials, lo, hi, trials)


def midranks(x: NDArray) -> NDArray:
    """1-based ranks with ties given their average rank (scipy's rankdata "average"),
    in plain numpy: it runs for every stratum of every window."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    starts, ends = bounds[:-1], bounds[1:]
    ranks = np.empty(x.size, dtype=float)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def delong_auroc(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """AUROC and its DeLong variance (DeLong, DeLong & Clarke-Pearson 1988), computed with the
    midrank algorithm of Sun & Xu (2014), O(n log n) instead of the O(m·n) placement values."""
    y, s = as_binary_inputs(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    m, n = pos.size, neg.size
    if m < 2 or n < 2:
        raise PerformanceError("DeLong variance needs at least two positives and two negatives")
    tx, ty = midranks(pos), midranks(neg)
    tz = midranks(np.concatenate([pos, neg]))
    auc = float((tz[:m].sum() - m * (m + 1) / 2.0) / (m * n))
    v10 = (tz[:m] - tx) / n  # structural components (Sun & Xu 2014, eq. 6)
    v01 = 1.0 - (tz[m:] - ty) / m
    variance = float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)
    return auc, variance


def auroc_interval(
    auc: float, variance: float, confidence: float = 0.95, *, n_effective: int | None = None
) -> tuple[float, float]:
    """Confidence interval for AUROC on the logit scale (back-transformed), which keeps the
    bounds inside (0, 1) and covers better than auc ± z·se when AUROC is near 1
    (Pepe 2003, §5.2.3; Qin & Hotilovac 2008)."""
    z = _z(confidence)
    if variance <= 0.0 or auc <= 0.0 or auc >= 1.0:
        # Perfect (or perfectly wrong) separation: the DeLong variance is 0 and any
        # delta-method interval is a single point claiming certainty. Fall back to a Wilson
        # interval with the smaller class size as the effective number of trials — a
        # conservative stand-in (the smaller class bounds how much the sample can show).
        if n_effective:
            return wilson_interval(round(auc * n_effective), n_effective, confidence)
        half = z * math.sqrt(max(variance, 0.0))
        return max(0.0, auc - half), min(1.0, auc + half)
    logit = math.log(auc / (1 - auc))
    se = math.sqrt(variance) / (auc * (1 - auc))
    lo, hi = logit - z * se, logit + z * se
    return 1 / (1 + math.exp(-lo)), 1 / (1 + math.exp(-hi))


def reliability_curve(
    labels: ArrayLike, scores: ArrayLike, bins: int = 10
) -> tuple[float, tuple[ReliabilityBin, ...]]:
    """Expected calibration error with equal-width bins (Naeini, Cooper & Hauskrecht 2015)
    and the non-empty bins of the reliability diagram (same binning as scikit-learn's
    `calibration_curve(strategy="uniform")`)."""
    y, s = as_binary_inputs(labels, scores)
    if y.size == 0:
        raise PerformanceError("calibration needs at least one study")
    if s.min() < 0.0 or s.max() > 1.0:
        raise PerformanceError("calibration needs scores that are probabilities in [0, 1]")
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lower, upper] (the first also holds 0), exactly as scikit-learn bins them.
    index = np.searchsorted(edges[1:-1], s, side="left")
    out: list[ReliabilityBin] = []
    ece = 0.0
    for b in range(bins):
        mask = index == b
        count = int(mask.sum())
        if count == 0:
            continue
        mean_s, rate = float(s[mask].mean()), float(y[mask].mean())
        ece += count / y.size * abs(rate - mean_s)
        out.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), count, mean_s, rate))
    return float(ece), tuple(out)


def evaluate(
    labels: ArrayLike,
    scores: ArrayLike,
    threshold: float,
    *,
    finding: str = "finding",
    confidence: float = 0.95,
    minimum: MinimumCounts | None = None,
    calibration_bins: int = 10,
) -> PerformanceResult:
    """Realised performance at the deployed threshold (positive when score >= threshold).

    Each metric is shown only when its own denominator reaches the minimum; the overall
    status is `insufficient_data` when the study, positive or negative count is below it.
    """
    minimum = minimum or MinimumCounts()
    y, s = as_binary_inputs(labels, scores)
    n = int(y.size)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    pred = s >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = n_pos - tp
    tn = n_neg - fp
    n_pred_pos = tp + fp

    enough = n >= minimum.studies and n_pos >= minimum.positives and n_neg >= minimum.negatives
    reason = None
    if not enough:
        reason = (f"{n} labelled studies ({n_pos} positive, {n_neg} negative); need "
                  f"{minimum.studies} ({minimum.positives}+, {minimum.negatives}-)")  # fmt: skip

    auroc, variance = Estimate(None, n=n), None
    if enough:
        auc, variance = delong_auroc(y, s)
        lo, hi = auroc_interval(auc, variance, confidence, n_effective=min(n_pos, n_neg))
        auroc = Estimate(auc, lo, hi, n)

    ece: float | None = None
    curve: tuple[ReliabilityBin, ...] = ()
    if n >= minimum.studies:
        ece, curve = reliability_curve(y, s, calibration_bins)

    return PerformanceResult(
        status=Status.OK if enough else Status.INSUFFICIENT_DATA,
        finding=finding,
        threshold=float(threshold),
        confidence=confidence,
        n=n,
        n_positive=n_pos,
        n_negative=n_neg,
        prevalence=proportion(n_pos, n, minimum.studies, confidence),
        auroc=auroc,
        auroc_variance=variance,
        sensitivity=proportion(tp, n_pos, minimum.positives, confidence),
        specificity=proportion(tn, n_neg, minimum.negatives, confidence),
        ppv=proportion(tp, n_pred_pos, minimum.predicted_positives, confidence),
        npv=proportion(tn, n - n_pred_pos, minimum.predicted_negatives, confidence),
        positive_rate=proportion(n_pred_pos, n, minimum.studies, confidence),
        # AI–radiologist discordance: the AI's call at the operating point disagrees with the
        # read (the error stream that degradation detection also watches).
        discordance_rate=proportion(fp + fn, n, minimum.studies, confidence),
        ece=ece,
        reliability=curve,
        reason=reason,
    )

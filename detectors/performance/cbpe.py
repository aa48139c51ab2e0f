"""Label-free performance estimates (confidence-based performance estimation, CBPE).

Pure computation beside detectors/performance/realised.py: before radiologists' reads arrive, scores
calibrated on the reference labels give an expected confusion matrix, hence estimated
sensitivity, specificity and AUROC with sampling-error bands, and flags saying when the
estimate cannot be trusted (concept shift, prevalence shift, inputs outside the reference).
The idea follows NannyML's CBPE; it assumes P(label | score) is unchanged since the reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.drift.results import Status
from detectors.performance.realised import (
    Estimate,
    PerformanceError,
    as_binary_inputs,
    midranks,
    normal_sf,
)

Method = Literal["isotonic", "platt"]
SUPPORT_BINS = 20


@dataclass(frozen=True)
class Calibrator:
    """Score → P(positive) mapping fitted on the reference labels, plus what the reliability
    checks compare against (reference prevalence, score support)."""

    method: Method
    reference_n: int
    reference_prevalence: float
    support_counts: tuple[int, ...]  # reference studies per equal-width score bin
    # Isotonic: the fitted step function's knots; Platt: (slope, intercept) on the logit.
    x_knots: tuple[float, ...] = field(repr=False)
    y_knots: tuple[float, ...] = field(repr=False)

    def calibrate(self, scores: ArrayLike) -> NDArray:
        s = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.interp(s, self.x_knots, self.y_knots)
        slope, intercept = self.x_knots
        return 1.0 / (1.0 + np.exp(-(slope * _logit(s) + intercept)))

    def unsupported(self, scores: ArrayLike, minimum: int = 10) -> NDArray[np.bool_]:
        """Scores that fall where the reference had fewer than `minimum` studies."""
        s = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
        index = np.minimum((s * SUPPORT_BINS).astype(int), SUPPORT_BINS - 1)
        return np.asarray(self.support_counts)[index] < minimum


def _logit(s: NDArray) -> NDArray:
    c = np.clip(s, 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def _smoothed_levels(levels: NDArray, fitted: NDArray) -> tuple[float, ...]:
    """Isotonic levels with a Laplace pseudo-count (k + 1) / (m + 2) per block of m reference
    studies, kept monotone. Without it a well-separated reference yields blocks of exactly
    0 and 1, which claim certainty: the sampling bands collapse and every window's few
    errors look like a broken calibration."""
    values, counts = np.unique(fitted, return_counts=True)
    smooth = {
        float(v): (float(v) * m + 1.0) / (m + 2.0) for v, m in zip(values, counts, strict=True)
    }
    out = np.maximum.accumulate([smooth.get(float(v), float(v)) for v in levels])
    return tuple(float(v) for v in out)


def fit_calibrator(labels: ArrayLike, scores: ArrayLike, method: Method = "isotonic") -> Calibrator:
    """Fit isotonic regression (Zadrozny & Elkan 2002) or Platt scaling (Platt 1999) on the
    reference labels with scikit-learn; the fitted map is kept as plain numbers."""
    y, s = as_binary_inputs(labels, scores)
    if y.size < 20 or y.sum() < 5 or (y.size - y.sum()) < 5:
        raise PerformanceError("calibration needs ≥ 20 reference studies, ≥ 5 of each class")
    if s.min() < 0.0 or s.max() > 1.0:
        raise PerformanceError("CBPE needs scores in [0, 1]")
    # scikit-learn is imported here, not at module level: it costs seconds to import and
    # only fitting needs it (every `radwatch` command imports this module's types).
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, y)
        x_knots = tuple(float(v) for v in iso.X_thresholds_)
        y_knots = _smoothed_levels(iso.y_thresholds_, iso.predict(s))
    elif method == "platt":
        lr = LogisticRegression(C=1e6).fit(_logit(s).reshape(-1, 1), y)
        x_knots = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        y_knots = ()
    else:
        raise PerformanceError(f"unknown calibration method {method!r}")
    index = np.minimum((s * SUPPORT_BINS).astype(int), SUPPORT_BINS - 1)
    support = np.bincount(index, minlength=SUPPORT_BINS)
    return Calibrator(method, int(y.size), float(y.mean()), tuple(int(c) for c in support),
                      x_knots, y_knots)  # fmt: skip


@dataclass(frozen=True)
class Reliability:
    """Whether the label-free estimate can be trusted, and why not."""

    concept_shift: bool
    prevalence_shift: bool
    outside_reference: bool
    outside_share: float
    labelled_checked: int  # labelled studies the calibration checks used (0: not checkable)
    observed_prevalence: float | None
    expected_prevalence: float
    calibration_p: float | None
    prevalence_p: float | None
    reasons: tuple[str, ...]

    @property
    def reliable(self) -> bool:
        return not (self.concept_shift or self.prevalence_shift or self.outside_reference)


@dataclass(frozen=True)
class CbpeResult:
    """Estimated performance of one finding on one window, before (or without) labels."""

    status: Status
    finding: str
    threshold: float
    n: int
    expected_prevalence: float | None
    positive_rate: float | None
    sensitivity: Estimate
    specificity: Estimate
    auroc: Estimate
    reliability: Reliability | None
    reason: str | None = None

    def metrics(self) -> dict[str, Estimate]:
        return {"auroc": self.auroc, "sensitivity": self.sensitivity,
                "specificity": self.specificity}  # fmt: skip


def expected_auroc(p: NDArray, scores: NDArray) -> float:
    """AUROC of the expected confusion: each study counts as p positive and 1−p negative;
    pairs are weighted p_i(1−p_j), ties count one half, a study is not paired with itself."""
    order = np.argsort(scores, kind="mergesort")
    s, q = scores[order], p[order]
    neg = 1.0 - q
    uniq, start = np.unique(s, return_index=True)
    group_neg = np.add.reduceat(neg, start)
    below = np.concatenate([[0.0], np.cumsum(group_neg)[:-1]])
    gid = np.repeat(np.arange(uniq.size), np.diff(np.append(start, s.size)))
    tie_neg = group_neg[gid] - neg  # other studies with the same score
    numerator = float(np.sum(q * (below[gid] + 0.5 * tie_neg)))
    denominator = float(q.sum() * neg.sum() - np.sum(q * neg))
    return numerator / denominator if denominator > 0 else float("nan")


def _draw_metrics(
    p: NDArray, scores: NDArray, pred: NDArray, draws: int, rng: np.random.Generator
) -> dict[str, NDArray]:
    """Realised metrics of `draws` label vectors y ~ Bernoulli(p): the sampling error of the
    realised value around the estimate, given the calibrated probabilities."""
    y = rng.random((draws, p.size)) < p
    n1 = y.sum(axis=1).astype(float)
    n0 = p.size - n1
    tp = (y & pred).sum(axis=1)
    tn = (~y & ~pred).sum(axis=1)
    ranks = midranks(scores)
    rank_sum = y.astype(float) @ ranks
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": tp / n1,
            "specificity": tn / n0,
            "auroc": (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n0),
        }


def _discrimination_gap(
    p: NDArray, scores: NDArray, labels: NDArray, alpha: float, rng: np.random.Generator
) -> float | None:
    """How far the realised AUROC lies outside the central 1 − alpha range of AUROC under
    labels drawn from the calibrated probabilities (0 when inside; None if not computable)."""
    if labels.sum() < 2 or (labels.size - labels.sum()) < 2:
        return None
    realised = _draw_metrics(labels.astype(float), scores, scores >= 0, 1, rng)["auroc"][0]
    sampled = _draw_metrics(p, scores, scores >= 0, 400, rng)["auroc"]
    sampled = sampled[np.isfinite(sampled)]
    if sampled.size < 200:
        return None
    lo, hi = np.percentile(sampled, [alpha / 2 * 100, 100 - alpha / 2 * 100])
    return float(max(0.0, lo - realised, realised - hi))


def _check_reliability(
    cal: Calibrator,
    scores: NDArray,
    p: NDArray,
    labelled: tuple[NDArray, NDArray] | None,
    alpha: float,
    min_labelled: int,
    max_outside_share: float,
    min_effect: float,
    rng: np.random.Generator,
) -> Reliability:
    reasons: list[str] = []
    outside = cal.unsupported(scores)
    outside_share = float(outside.mean()) if outside.size else 0.0
    outside_flag = outside_share > max_outside_share
    if outside_flag:
        reasons.append(f"inputs outside the reference: {outside_share:.0%} of scores fall where "
                       f"the reference had too few studies to calibrate")  # fmt: skip
    expected_prev = float(p.mean()) if p.size else float("nan")
    concept = prevalence = False
    cal_p = prev_p = observed = None
    n_lab = 0
    if labelled is not None:
        y_l, s_l = as_binary_inputs(*labelled)
        n_lab = int(y_l.size)
        if n_lab >= min_labelled:
            p_l = cal.calibrate(s_l)
            observed = float(y_l.mean())
            # Calibration-in-the-large (observed vs expected positives) and Spiegelhalter's
            # (1986) z-test of overall calibration; Bonferroni over the two.
            var_l = float(np.sum(p_l * (1 - p_l)))
            z_large = (y_l.sum() - p_l.sum()) / np.sqrt(max(var_l, 1e-12))
            w = 1 - 2 * p_l
            var_s = float(np.sum(w * w * p_l * (1 - p_l)))
            z_spieg = float(np.sum((y_l - p_l) * w)) / np.sqrt(max(var_s, 1e-12))
            cal_p = float(min(1.0, 2 * 2 * normal_sf(max(abs(z_large), abs(z_spieg)))))
            expected_l = float(p_l.mean())
            # A gap must be significant AND larger than `min_effect`: the calibrator itself was
            # estimated, so on thousands of labels a statistically significant but clinically
            # trivial gap would otherwise condemn every estimate.
            mismatch = cal_p < alpha and abs(observed - expected_l) > min_effect
            # Score test of the labelled prevalence against the reference's (n ≥ min_labelled).
            p0 = cal.reference_prevalence
            z_prev = (y_l.sum() - n_lab * p0) / np.sqrt(max(n_lab * p0 * (1 - p0), 1e-12))
            prev_p = float(min(1.0, 2 * normal_sf(abs(float(z_prev)))))
            prev_moved = prev_p < alpha and abs(observed - p0) > min_effect
            # Discrimination check: the realised AUROC of the labelled studies against the
            # range CBPE allows for them (1 − alpha band of label draws, plus min_effect).
            disc = _discrimination_gap(p_l, s_l, y_l, alpha, rng)
            if prev_moved:
                # Scores alone cannot tell a change of case mix (label shift, which breaks
                # P(finding | score)) from a change of images that the calibration carries
                # (covariate shift); a near-perfect model hides the difference even from the
                # labels. So a moved prevalence always makes the estimate provisional.
                prevalence = True
                verdict = ("and the labels confirm the calibration no longer holds" if mismatch
                           else "calibration still holds on these labels, so the estimate "
                           "stands only if the change came through the images")  # fmt: skip
                reasons.append(
                    f"prevalence shift: labelled prevalence {observed:.1%} vs reference "
                    f"{p0:.1%} (calibrated scores expected {expected_l:.1%}); CBPE assumes "
                    f"P(finding | score) is unchanged; {verdict}"
                )
            elif mismatch:
                concept = True
                reasons.append(
                    f"concept shift: labels disagree with calibrated scores (observed "
                    f"{observed:.1%} positive, expected {expected_l:.1%}; p={cal_p:.2g})"
                )
            if disc is not None and disc > min_effect:
                concept = True
                reasons.append(
                    f"concept shift: realised AUROC of the labelled studies lies {disc:.3f} "
                    f"outside the range the calibrated scores allow"
                )
        else:
            reasons.append(f"only {n_lab} labelled studies: calibration not yet checkable")
    if n_lab < min_labelled and abs(expected_prev - cal.reference_prevalence) > 2 * min_effect:
        reasons.append(
            f"scores imply prevalence {expected_prev:.1%} vs reference "
            f"{cal.reference_prevalence:.1%}: if the case mix changed the estimate is biased; "
            f"not checkable until reads arrive"
        )
    return Reliability(concept, prevalence, outside_flag, outside_share, n_lab, observed,
                       expected_prev, cal_p, prev_p, tuple(reasons))  # fmt: skip


def estimate(
    calibrator: Calibrator,
    scores: ArrayLike,
    threshold: float,
    *,
    finding: str = "finding",
    labelled: tuple[ArrayLike, ArrayLike] | None = None,
    confidence: float = 0.95,
    draws: int = 400,
    seed: int = 0,
    min_studies: int = 30,
    min_labelled: int = 30,
    alpha: float = 0.01,
    max_outside_share: float = 0.10,
    min_effect: float = 0.03,
) -> CbpeResult:
    """Estimate sensitivity, specificity and AUROC of a window from its scores alone.

    `labelled` is (labels, scores) of the window's studies whose reads have arrived; it is
    used only to check the estimate's assumptions, never to change the estimate. Bands are
    the central `confidence` range of the realised metric when labels are drawn from the
    calibrated probabilities (seeded Monte Carlo, `draws` draws).
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise PerformanceError("scores must be a finite 1-D array")
    n = int(s.size)
    if n < min_studies:
        return CbpeResult(Status.INSUFFICIENT_DATA, finding, float(threshold), n, None, None,
                          Estimate(None, n=n), Estimate(None, n=n), Estimate(None, n=n), None,
                          f"{n} studies in the window; need {min_studies}")  # fmt: skip
    p = calibrator.calibrate(s)
    pred = s >= threshold
    rel = _check_reliability(calibrator, s, p, None if labelled is None else
                             (np.asarray(labelled[0]), np.asarray(labelled[1], dtype=float)),
                             alpha, min_labelled, max_outside_share, min_effect,
                             np.random.default_rng([seed, 1]))  # fmt: skip
    e_pos = float(p.sum())
    e_tp, e_tn = float(np.sum(p * pred)), float(np.sum((1 - p) * ~pred))
    point = {
        "sensitivity": e_tp / e_pos if e_pos > 0 else float("nan"),
        "specificity": e_tn / (n - e_pos) if n - e_pos > 0 else float("nan"),
        "auroc": expected_auroc(p, s),
    }
    sampled = _draw_metrics(p, s, pred, draws, np.random.default_rng(seed))
    tail = (1 - confidence) / 2 * 100
    out: dict[str, Estimate] = {}
    for name, value in point.items():
        values = sampled[name][np.isfinite(sampled[name])]
        if not np.isfinite(value) or values.size < draws // 2:
            out[name] = Estimate(None, n=n)
            continue
        lo, hi = np.percentile(values, [tail, 100 - tail])
        out[name] = Estimate(float(value), float(lo), float(hi), n)
    return CbpeResult(Status.OK, finding, float(threshold), n, float(p.mean()),
                      float(pred.mean()), out["sensitivity"], out["specificity"], out["auroc"],
                      rel)  # fmt: skip

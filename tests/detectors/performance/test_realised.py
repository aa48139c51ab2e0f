"""detectors/performance/realised.py: metric values against scikit-learn, interval coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, precision_score, recall_score, roc_auc_score

from detectors.drift.results import Status
from detectors.performance.realised import (
    MinimumCounts,
    PerformanceError,
    auroc_interval,
    delong_auroc,
    evaluate,
    wilson_interval,
)


def _fixed_data(seed: int = 0, n: int = 400):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.25).astype(int)
    s = np.clip(rng.beta(2, 5, n) + 0.35 * y, 0, 1).round(3)  # rounded: ties on purpose
    return y, s


def test_metric_values_equal_scikit_learn() -> None:
    y, s = _fixed_data()
    thr = 0.5
    r = evaluate(y, s, thr)
    pred = (s >= thr).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, pred).ravel()
    assert r.status == Status.OK
    assert r.auroc.value == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r.sensitivity.value == pytest.approx(recall_score(y, pred), abs=1e-12)
    assert r.specificity.value == pytest.approx(recall_score(y, pred, pos_label=0), abs=1e-12)
    assert r.ppv.value == pytest.approx(precision_score(y, pred), abs=1e-12)
    assert r.npv.value == pytest.approx(precision_score(y, pred, pos_label=0), abs=1e-12)
    assert r.positive_rate.value == pytest.approx(pred.mean(), abs=1e-12)
    assert r.discordance_rate.value == pytest.approx((fp + fn) / len(y), abs=1e-12)
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    assert [b.observed_rate for b in r.reliability] == pytest.approx(prob_true, abs=1e-12)
    assert [b.mean_score for b in r.reliability] == pytest.approx(prob_pred, abs=1e-12)
    counts = np.array([b.count for b in r.reliability])
    ece = float(np.sum(counts / len(y) * np.abs(prob_true - prob_pred)))
    assert r.ece == pytest.approx(ece, abs=1e-12)


def test_delong_variance_equals_placement_value_formula() -> None:
    # DeLong et al. (1988) with explicit O(m·n) placement values, ties counted one half.
    y, s = _fixed_data(seed=3, n=200)
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    expected = np.var(v10, ddof=1) / pos.size + np.var(v01, ddof=1) / neg.size
    auc, var = delong_auroc(y, s)
    assert auc == pytest.approx(psi.mean(), abs=1e-12)
    assert var == pytest.approx(expected, rel=1e-10)


def test_wilson_coverage_close_to_nominal() -> None:
    # seed 11; 4000 binomial draws per (p, n) over 12 settings. Tolerance: the mean coverage
    # within ±0.015 of 0.95 and every setting ≥ 0.91 (Wilson oscillates around nominal,
    # Brown, Cai & DasGupta 2001, Fig. 4).
    rng = np.random.default_rng(11)
    coverages = []
    for p in (0.05, 0.2, 0.5, 0.9):
        for n in (20, 60, 200):
            k = rng.binomial(n, p, size=4000)
            table = {int(j): wilson_interval(int(j), n) for j in np.unique(k)}
            hits = [table[int(j)][0] <= p <= table[int(j)][1] for j in k]
            coverages.append(float(np.mean(hits)))
    assert abs(np.mean(coverages) - 0.95) < 0.015, coverages
    assert min(coverages) >= 0.91, coverages


def test_delong_interval_coverage_close_to_nominal() -> None:
    # Binormal model, true AUROC = Φ(d/√2) = 0.88 for d = 1.65; 60 positives, 180
    # negatives; seed 5; 800 replicates. Tolerance: coverage in [0.93, 0.97] (binomial
    # standard error of 800 draws at 0.95 is 0.0077, so ±2.6 SE).
    rng = np.random.default_rng(5)
    d = 1.65
    true_auc = float(stats.norm.cdf(d / np.sqrt(2)))
    hits = 0
    reps = 800
    y = np.r_[np.ones(60, int), np.zeros(180, int)]
    for _ in range(reps):
        s = np.r_[rng.normal(d, 1, 60), rng.normal(0, 1, 180)]
        auc, var = delong_auroc(y, s)
        lo, hi = auroc_interval(auc, var)
        hits += lo <= true_auc <= hi
    assert 0.93 <= hits / reps <= 0.97, hits / reps


def test_minimum_counts_hide_numbers() -> None:
    y = np.array([1] * 5 + [0] * 40)
    s = np.linspace(0, 1, 45)
    r = evaluate(y, s, 0.5, minimum=MinimumCounts(positives=10))
    assert r.status == Status.INSUFFICIENT_DATA
    assert r.auroc.value is None and r.sensitivity.value is None and r.sensitivity.n == 5
    assert r.specificity.value is not None  # 40 negatives: enough for its own denominator
    assert "5 positive" in (r.reason or "")


def test_bad_inputs_raise_the_package_error() -> None:
    with pytest.raises(PerformanceError):
        evaluate([0, 1, 2], [0.1, 0.2, 0.3], 0.5)
    with pytest.raises(PerformanceError):
        evaluate([0, 1], [0.1, float("nan")], 0.5)
    with pytest.raises(PerformanceError):
        evaluate([0, 1], [0.1], 0.5)


def test_perfect_separation_does_not_claim_certainty() -> None:
    y = np.array([1] * 20 + [0] * 80)
    s = np.r_[np.linspace(0.6, 1.0, 20), np.linspace(0.0, 0.4, 80)]
    r = evaluate(y, s, 0.5)
    assert r.auroc.value == 1.0 and r.auroc.upper == 1.0
    assert r.auroc.lower is not None and 0.8 < r.auroc.lower < 0.9  # Wilson 20/20: 0.839

"""detectors/performance/degradation.py: controlled false alarms, power against a real drop, CUSUM ARL."""

from __future__ import annotations

import numpy as np
from scipy import stats

from detectors.drift.results import Status
from detectors.performance.degradation import compare
from detectors.performance.realised import evaluate


def _binormal(rng: np.random.Generator, n: int, prevalence: float, d: float):
    y = (rng.random(n) < prevalence).astype(int)
    s = stats.norm.cdf(rng.normal(0, 1, n) + d * y - 0.5 * d)  # scores in (0, 1)
    return y, s


def test_false_alarm_rate_controlled_on_unchanged_performance() -> None:
    # Seed 21; 250 (reference of 1000, window of 300 labelled studies) pairs from the same
    # distribution; alpha 0.05 (Bonferroni over AUROC, sensitivity, specificity). The rate is
    # controlled over references too (one lucky reference raises it for all its windows,
    # which is what the monitor's margin is for). Tolerance: rate ≤ 0.05 + 2.33·sqrt(0.05·
    # 0.95/250) = 0.082.
    rng = np.random.default_rng(21)
    alarms = 0
    for _ in range(250):
        ref = evaluate(*_binormal(rng, 1000, 0.2, 2.2), 0.5)
        win = evaluate(*_binormal(rng, 300, 0.2, 2.2), 0.5)
        alarms += compare(ref, win, alpha=0.05).degraded
    assert alarms / 250 <= 0.082, alarms


def test_power_against_a_real_drop() -> None:
    # Seed 22; AUROC drops from ~0.94 (d=2.2) to ~0.76 (d=1.0); windows of 300; alpha 0.01.
    # Tolerance: detected in ≥ 95 of 100 windows, and AUROC among the metrics that fell.
    rng = np.random.default_rng(22)
    ref = evaluate(*_binormal(rng, 1000, 0.2, 2.2), 0.5)
    hits = 0
    for _ in range(100):
        result = compare(ref, evaluate(*_binormal(rng, 300, 0.2, 1.0), 0.5), alpha=0.01)
        hits += result.degraded
        assert all(t.difference < 0 for t in result.tests if t.metric == "auroc")
    assert hits >= 95, hits


def test_insufficient_window_is_not_a_verdict() -> None:
    rng = np.random.default_rng(0)
    ref = evaluate(*_binormal(rng, 1000, 0.2, 2.2), 0.5)
    # 8 studies: no metric reaches its own minimum count (10 per denominator).
    result = compare(ref, evaluate(*_binormal(rng, 8, 0.2, 2.2), 0.5))
    assert result.status == Status.INSUFFICIENT_DATA and not result.degraded

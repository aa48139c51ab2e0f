"""The discrepancy test's false-alarm rate under H0, its power, and its input checks
(detectors/performance/discrepancy.py). Seeded; each runs in well under a second."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.drift.results import Status
from detectors.performance.discrepancy import (
    Call,
    Counts,
    DiscrepancyError,
    compare,
    evaluate,
    tally,
    two_proportion_test,
)

SEED = 20261130


def test_false_alarm_rate_under_h0_is_at_most_alpha():
    """H0: reference and window share the rate 5%. 4,000 seeded replications of n_ref=1000,
    n_win=400 at alpha 0.05: the share rejected is at most alpha + 3 binomial standard errors
    (Fisher's exact test is conservative, never liberal) and not below alpha / 2 (not so
    conservative that it loses its power)."""
    rng = np.random.default_rng(SEED)
    reps, alpha, p = 4000, 0.05, 0.05
    x_ref = rng.binomial(1000, p, reps)
    x_win = rng.binomial(400, p, reps)
    rejected = np.mean([two_proportion_test(int(a), 1000, int(b), 400).p_value < alpha
                        for a, b in zip(x_ref, x_win, strict=True)])  # fmt: skip
    se = np.sqrt(alpha * (1 - alpha) / reps)
    assert alpha / 2 <= rejected <= alpha + 3 * se, rejected


def test_power_against_a_doubled_rate():
    """H1: the window's rate doubles (5% → 10%): rejected in at least 80% of 500 seeded
    replications at alpha 0.01 (n_ref=1000, n_win=500; the z-approximation's power is 0.91,
    the exact test's a little less)."""
    rng = np.random.default_rng(SEED + 1)
    x_ref = rng.binomial(1000, 0.05, 500)
    x_win = rng.binomial(500, 0.10, 500)
    power = np.mean([two_proportion_test(int(a), 1000, int(b), 500).p_value < 0.01
                     for a, b in zip(x_ref, x_win, strict=True)])  # fmt: skip
    assert power >= 0.8, power


def test_one_sided_a_fall_in_discrepancy_is_not_flagged():
    assert two_proportion_test(100, 1000, 10, 500).p_value > 0.99


def test_family_wise_false_alarms_per_window_stay_under_alpha_with_many_strata():
    """Twenty scanners, all at H0 (rate 6%): over 300 seeded windows the share of windows with
    any flag is at most alpha + 3 SE (Bonferroni across the strata tested)."""
    rng = np.random.default_rng(SEED + 2)
    alpha, windows, any_flag = 0.05, 300, 0
    scanners = [f"vendor S{i}" for i in range(20)]

    def calls(n: int) -> list[Call]:
        which = rng.integers(0, len(scanners), n)
        disc = rng.random(n) < 0.06
        return [
            Call(bool(d), False, {"scanner": scanners[w]}) for w, d in zip(which, disc, strict=True)
        ]

    ref = tally(calls(6000))
    for index in range(windows):
        tests = compare(ref, tally(calls(2000)), index=index + 1, alpha=alpha)
        any_flag += any(t.flagged for t in tests)
    se = np.sqrt(alpha * (1 - alpha) / windows)
    assert any_flag / windows <= alpha + 3 * se, any_flag


def test_too_few_studies_are_insufficient_data_not_a_test():
    ref = tally([Call(False, False, {"site": "a"})] * 50)
    win = tally([Call(True, False, {"site": "a"})] * 3)
    tests = compare(ref, win, index=1, alpha=0.01)
    assert {t.status for t in tests} == {Status.INSUFFICIENT_DATA}
    assert not any(t.flagged for t in tests)


def test_counts_split_false_positives_from_misses():
    c = Counts()
    for call in (Call(True, False, {}), Call(False, True, {}), Call(True, True, {})):
        c = c.plus(call)
    assert (c.n, c.discrepant, c.ai_only, c.report_only) == (3, 2, 1, 1)


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"reference_size": 0, "window_size": 10}, "positive"),
    ({"reference_size": 10, "window_size": 10, "alpha": 1.5}, "alpha"),
    ({"reference_size": 500, "window_size": 10}, "fewer than"),
])  # fmt: skip
def test_bad_sizes_are_refused(kwargs, text):
    with pytest.raises(DiscrepancyError, match=text):
        evaluate([Call(False, False, {})] * 20, **kwargs)


def test_bad_counts_are_refused():
    with pytest.raises(DiscrepancyError):
        two_proportion_test(5, 4, 1, 10)

"""Detectability (detectors/detectability.py): the resampled KS power, the run probability, the
per-test level, the strata too small to watch, and how the minimal shift moves with volume
and window size. Pure: synthetic normal references, seeded; sizes and tolerances per test."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy import special, stats

from detectors.detectability import (
    Detectability,
    FittedTest,
    KSPower,
    Lead,
    Setting,
    Stratum,
    assess,
    level_weights,
    needed_power,
    run_probability,
)
from detectors.drift.ks import ks_two_sample
from detectors.false_alarm_budget import FalseAlarmBudget, Volume, derive


def whole(values: np.ndarray, share: float = 1.0, kind: str = "all", value: str = "all",
          signal: str = "scores") -> Stratum:  # fmt: skip
    return Stratum(kind, value, share, len(values), True,
                   tests=(FittedTest(f"ks:{signal}", signal, 1),),
                   leads={signal: Lead(signal, f"ks:{signal}", "nodule", values)})  # fmt: skip


def test_vectorised_statistic_is_the_detectors_ks() -> None:
    """KSPower's D per pseudo-window equals drift/ks.py's `ks_two_sample` on the same parts
    (reference 600, window 80, 20 draws, shifts 0 / 0.3 / 1.1; exact to 1e-12), and the parts
    are disjoint draws of the reference."""
    rng = np.random.default_rng(3)
    values = np.round(rng.standard_normal(600), 1)  # rounded: ties, as KVP has them
    power = KSPower(values, 80, 0.01, 20, np.random.default_rng(4))
    z = special.ndtri((stats.rankdata(values) - 0.5) / len(values))  # the normal scores
    ref = power.ref.reshape(20, power.r) - (np.arange(20) * power.span)[:, None]
    win = power.win.reshape(20, power.n) - (np.arange(20) * power.span)[:, None]
    assert power.r == 520
    for shift in (0.0, 0.3, 1.1):
        got = power.statistics(shift)
        for b in range(20):
            d, _ = ks_two_sample(ref[b], win[b] + shift)
            assert got[b] == pytest.approx(d, abs=1e-12)
    counts = np.unique(np.round(z, 9), return_counts=True)
    pooled = np.unique(np.round(np.concatenate([ref[0], win[0]]), 9), return_counts=True)
    assert np.array_equal(counts[0], pooled[0]) and np.array_equal(counts[1], pooled[1])


def test_without_a_shift_it_rejects_at_the_level() -> None:
    """No shift: rejection rate at level 0.05 is 0.02–0.06 (reference 1,500, window 200,
    4,000 draws, seed 1; Stephens' p is slightly conservative, measured 0.047). A scheme that
    tested a window against a reference holding it would reject less than half as often
    (measured 0.018 at these sizes), and one with a mis-scaled critical value far more."""
    rng = np.random.default_rng(1)
    power = KSPower(rng.standard_normal(1500), 200, 0.05, 4000, rng)
    assert 0.02 <= power.power(0.0) <= 0.06


def test_run_probability_is_exact() -> None:
    """Against enumeration of all 2^8 sequences (k = 2, 3; p = 0.1, 0.5, 0.9; to 1e-12), and
    the closed forms k = 1 (1 − (1 − p)^W) and k = W (p^W)."""
    for k, p in itertools.product((2, 3), (0.1, 0.5, 0.9)):
        total = 0.0
        for seq in itertools.product((0, 1), repeat=8):
            if "1" * k in "".join(map(str, seq)):
                total += p ** sum(seq) * (1 - p) ** (8 - sum(seq))
        assert run_probability(p, k, 8)[0] == pytest.approx(total, abs=1e-12)
    assert run_probability(0.2, 1, 10)[0] == pytest.approx(1 - 0.8**10)
    assert run_probability(0.7, 5, 5)[0] == pytest.approx(0.7**5)
    assert run_probability(0.9, 3, 2)[0] == 0.0
    assert run_probability(needed_power(3, 100, 0.8), 3, 100)[0] == pytest.approx(0.8, abs=1e-6)


def test_per_test_level_follows_the_suites_family_weights() -> None:
    """Whole model holds half the weight, split by signal then test then feature; each
    watched stratum shares the other half (drift/suite.py family_weights), by hand."""
    strata = [
        Stratum("all", "all", 1.0, 900, True, tests=(FittedTest("ks:scores", "scores", 1),
                FittedTest("chi2:scores", "scores", 1), FittedTest("ks:acquisition", "acquisition", 4))),
        Stratum("site", "a", 0.5, 450, True, tests=(FittedTest("ks:scores", "scores", 1),)),
        Stratum("site", "b", 0.5, 450, True, tests=(FittedTest("ks:scores", "scores", 2),)),
    ]  # fmt: skip
    w = level_weights(strata, 0.5)
    assert w[(("all", "all"), "ks:scores")] == pytest.approx(0.5 / 2 / 2)
    assert w[(("all", "all"), "ks:acquisition")] == pytest.approx(0.5 / 2 / 4)
    assert w[(("site", "a"), "ks:scores")] == pytest.approx(0.25)
    assert w[(("site", "b"), "ks:scores")] == pytest.approx(0.25 / 2)
    assert level_weights(strata[:1], 0.5)[(("all", "all"), "ks:scores")] == pytest.approx(0.25)


def test_a_two_percent_stratum_at_200_a_day_is_too_small_to_watch() -> None:
    """2% of 200 studies a day with windows of 200: 4 studies per window < 30 → flagged, no
    shift estimated; the whole model (reference 2,000) is watched with a finite shift."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(2000)
    small = whole(values[:40], share=0.02, kind="site", value="small")
    setting = Setting(window=200, max_span_days=7, studies_per_day=200, alpha=0.05,
                      persistence=2)  # fmt: skip
    rows = {r.stratum_value: r for r in assess([whole(values), small], ["scores"], setting)}
    assert not rows["small"].watchable
    assert rows["small"].per_window == pytest.approx(4.0) and rows["small"].per_day == 4.0
    assert "per window < minimum 30" in rows["small"].reason
    assert rows["small"].min_shift_sd is None
    assert rows["all"].watchable and rows["all"].min_shift_sd is not None


def test_a_normal_mean_shift_is_near_the_normal_approximation() -> None:
    """Reference N(0, 1) of 2,200 → comparison part 2,000, window 200, level 0.01, one window
    (power 0.8 needed), grid step 0.01, 400 draws, seed 0.

    Normal approximation: the z-test for a mean shift needs δ_z = (z₀.₉₉₅ + z₀.₈)·√(1/n + 1/r)
    = 0.254 SD; KS is less efficient than the z-test for a normal shift, so δ_KS / δ_z must
    lie in [1.0, 1.3] (measured 1.18, 1.21, 1.27 at n/r 200/2000, 50/1000, 100/300). And the resampled δ must be
    the true one: fresh N(0, 1) / N(δ, 1) samples (400, seed 9) with the detector's own
    ks_two_sample reach power 0.8 ± 0.06 at it (measured 0.80)."""
    n, r, level = 200, 2000, 0.01
    values = np.random.default_rng(0).standard_normal(n + r)
    setting = Setting(window=n, max_span_days=7, studies_per_day=n, alpha=level, persistence=1,
                      within_days=1, replicates=400,
                      grid=tuple(round(0.01 * i, 2) for i in range(1, 151)))  # fmt: skip
    (row,) = assess([whole(values)], ["scores"], setting)
    assert row.power_needed == pytest.approx(0.8, abs=1e-6) and row.test_alpha == level
    delta_z = (stats.norm.ppf(1 - level / 2) + stats.norm.ppf(0.8)) * math.sqrt(1 / n + 1 / r)
    assert row.min_shift_sd is not None
    assert 1.0 <= row.min_shift_sd / delta_z <= 1.3, (row.min_shift_sd, delta_z)
    rng = np.random.default_rng(9)
    hits = 0
    for _ in range(400):
        fresh = rng.standard_normal(n) + row.min_shift_sd
        _, p = ks_two_sample(np.sort(rng.standard_normal(r)), fresh)
        hits += p < level
    assert abs(hits / 400 - 0.8) <= 0.06, hits / 400


def test_the_shift_is_on_the_normal_score_scale() -> None:
    """A monotone transform of the reference (exp; a steep logistic that makes it bimodal near
    0 and 1, as the simulator's nodule score is) gives exactly the same minimal shift as the
    normal reference itself (KS and normal scores are rank-based; 1,000 values, window 100,
    level 0.01, seed 0). A raw mean shift in SDs would give the grid's floor (0.05) for the
    bimodal one: each negative study would move above all the others."""
    x = np.random.default_rng(5).standard_normal(1000)
    setting = Setting(window=100, max_span_days=7, studies_per_day=100, alpha=0.01,
                      persistence=1, within_days=1)  # fmt: skip
    got = [assess([whole(v)], ["scores"], setting)[0] for v in
           (x, np.exp(x), 1 / (1 + np.exp(-8 * (x - 1.0))))]  # fmt: skip
    assert got[0].min_shift_sd is not None and got[0].min_shift_sd >= 0.3
    assert got[0].min_shift_sd == got[1].min_shift_sd == got[2].min_shift_sd
    assert got[0].median_to_percentile == pytest.approx(
        100 * stats.norm.cdf(got[0].min_shift_sd), abs=0.05
    )


def test_more_volume_never_makes_the_minimal_shift_larger() -> None:
    """Window 200; 20 … 10,000 studies a day, α and persistence derived by the budget at each
    volume (1 false incident / 90 days); reference 3,000 (whole) and a 30% site; 200 draws,
    seed 0. Measured whole model: none (one window in 7 days) at ≤ 50/day, then 0.30 → 0.15."""
    values = np.random.default_rng(0).standard_normal(3000)
    strata = [whole(values), whole(values[:900], share=0.3, kind="site", value="a")]
    previous = [math.inf, math.inf]
    for per_day in (20, 50, 100, 200, 500, 1000, 3000, 10000):
        derived = derive(FalseAlarmBudget(), Volume(per_day, per_day * 0.7, "test"))
        setting = Setting(window=200, max_span_days=7, studies_per_day=per_day,
                          alpha=derived.drift.alpha, persistence=derived.drift.open_after)  # fmt: skip
        shifts = [r.min_shift_sd for r in assess(strata, ["scores"], setting)]
        now = [math.inf if s is None else s for s in shifts]
        assert all(a <= b for a, b in zip(now, previous, strict=True)), (per_day, now, previous)
        previous = now
    assert previous[0] <= 0.2


def test_a_bigger_window_never_makes_the_per_window_shift_larger() -> None:
    """α 0.01, persistence 2 and 14 windows in the stated time held fixed; windows of 50, 100,
    200, 400 from a reference of 4,000 (200 draws, seed 0): the minimal shift never grows.
    With the time held fixed instead, it can: at 100 studies a day a window of 400 closes
    after 4 days, one window in 7 days cannot make 2 in a row (not detectable), where a
    window of 100 can."""
    values = np.random.default_rng(0).standard_normal(4000)
    previous = math.inf
    for window in (50, 100, 200, 400):
        setting = Setting(window=window, max_span_days=30, studies_per_day=window * 2,
                          alpha=0.01, persistence=2)  # fmt: skip
        assert setting.windows_within == 14
        (row,) = assess([whole(values)], ["scores"], setting)
        assert row.min_shift_sd is not None and row.min_shift_sd <= previous
        previous = row.min_shift_sd
    rows = {w: assess([whole(values)], ["scores"], Setting(window=w, max_span_days=7,
                      studies_per_day=100, alpha=0.05, persistence=2))[0]
            for w in (100, 400)}  # fmt: skip
    assert rows[100].min_shift_sd is not None
    assert rows[400].min_shift_sd is None and "only 1 windows in 7 days" in rows[400].reason


def test_rows_say_what_they_cannot_estimate_and_render() -> None:
    """Categorical-only signal: watched, no number, says what is checked; a stratum the suite
    did not fit: too small, with its reason; the table and the JSON form."""
    values = np.random.default_rng(2).standard_normal(1000)
    cats = Lead("acquisition", "chi2:acquisition", "categories", None, note="Chi-square only")
    strata = [
        Stratum("all", "all", 1.0, 1000, True,
                tests=(FittedTest("ks:scores", "scores", 1), FittedTest("chi2:acquisition", "acquisition", 3)),
                leads={"scores": Lead("scores", "ks:scores", "nodule", values),
                       "acquisition": cats}),
        Stratum("age_band", "0-17", 0.01, 10, False, unfitted_reason="10 reference studies"),
    ]  # fmt: skip
    setting = Setting(window=200, max_span_days=7, studies_per_day=2880, alpha=0.05,
                      persistence=3)  # fmt: skip
    rows = assess(strata, ["scores", "acquisition"], setting)
    by = {(r.signal, r.stratum_value): r for r in rows}
    acq = by[("acquisition", "all")]
    assert acq.watchable and acq.min_shift_sd is None and acq.reason == "Chi-square only"
    assert not by[("scores", "0-17")].watchable
    assert by[("scores", "0-17")].reason == "10 reference studies"
    result = Detectability("m", "default", 1, Volume(2880, 2000, "test"), FalseAlarmBudget(),
                           setting, rows)  # fmt: skip
    doc = json.loads(json.dumps(result.as_dict()))
    assert doc["setting"]["windows_within"] == 100 and len(doc["rows"]) == 4
    text = "\n".join(result.lines())
    assert "age_band=0-17" in text and " NO " in text and "whole model" in text
    assert [r.stratum_value for r in result.too_small()] == ["0-17", "0-17"]

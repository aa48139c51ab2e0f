"""detectors/performance/cusum.py: designed run lengths hold by Monte Carlo, state is data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.performance.cusum import (
    BernoulliCusumDesign,
    CusumState,
    NormalCusumDesign,
    design_bernoulli,
    design_normal,
    indicators,
    integer_cusum_arl,
    normal_cusum_arl,
    simulate_run_lengths,
    update,
    upper_rate,
)
from detectors.performance.realised import PerformanceError


def test_markov_chain_arl_matches_closed_forms():
    # limit 1: the first discrepancy alarms, so the run length is geometric with mean 1/p.
    assert integer_cusum_arl(3, 1, 1, 0.2) == pytest.approx(5.0)
    # up = down = 1, limit 2: from 0 a 1 goes to 1, a 0 stays; from 1 a 1 alarms, a 0
    # returns to 0: a(0) = 1 + p a(1) + q a(0), a(1) = 1 + q a(0)  =>  a(0) = (1 + p)/p².
    assert integer_cusum_arl(1, 1, 2, 0.25) == pytest.approx(1.25 / 0.0625)


def test_designed_limit_reaches_the_target_arl0_by_monte_carlo():
    # p0 = 0.10 (a discrepancy rate), p1 = 1.5 × p0, ARL0 target 300 studies. The achieved
    # (exact) ARL0 is the smallest at or above the target: within +5% of it. Seed 15, 400
    # independent zero-state runs: the run length is ~geometric (sd ≈ mean), so the Monte
    # Carlo mean has a ~5% standard error; tolerance ±15% (3 standard errors).
    design = design_bernoulli(0.10, 0.15, arl0=300)
    assert 300 <= design.arl0_achieved <= 315
    lengths = simulate_run_lengths(design, 0.10, 400, np.random.default_rng(15), 20_000)
    assert lengths.max() <= 20_000  # every run alarmed: the mean is not truncated
    assert lengths.mean() == pytest.approx(design.arl0_achieved, rel=0.15), lengths.mean()


def test_arl1_matches_monte_carlo_for_stated_shifts():
    # ARL0 400 at p0 = 0.05; shifts 1.5 × p0 and p0 + 0.05. Seed 16, 400 runs per shift;
    # out-of-control run lengths vary less than geometric (sd/mean < 1), so ±10% is more
    # than 2 standard errors. A larger shift is detected sooner.
    rng = np.random.default_rng(16)
    delays = []
    for p1 in (0.075, 0.10):
        design = design_bernoulli(0.05, p1, arl0=400)
        lengths = simulate_run_lengths(design, p1, 400, rng, 20_000)
        assert lengths.mean() == pytest.approx(design.arl1, rel=0.10), (p1, lengths.mean())
        assert design.arl1 == pytest.approx(design.arl(p1))
        delays.append(design.arl1)
    assert delays[1] < delays[0] < 400


def test_steady_state_delay_matches_monte_carlo():
    # The shift comes after 200 quiet in-control studies (the chart has forgotten its start),
    # p0 = 0.10 → p1 = 0.15, ARL0 300. Seed 19, 1,000 streams, of which those with no alarm
    # before the change (~half) count: their mean delay is within ±10% (> 2 standard errors)
    # of the quasi-stationary ARL1, which is below the zero-state ARL1.
    design = design_bernoulli(0.10, 0.15, arl0=300)
    assert design.arl1_steady < design.arl1
    rng = np.random.default_rng(19)
    change, delays = 200, []
    for _ in range(1000):
        x = np.concatenate([rng.random(change) < 0.10, rng.random(3000) < 0.15])
        alarms = update(design, CusumState(), x).alarms
        if alarms and alarms[0] >= change:
            delays.append(alarms[0] - change + 1)
    assert len(delays) > 300
    assert np.mean(delays) == pytest.approx(design.arl1_steady, rel=0.10), np.mean(delays)


def test_update_is_pages_recursion_and_batching_does_not_matter():
    # Seed 17, 3,000 studies at a rate between p0 and p1 (a few alarms): the closed-form
    # batch update alarms exactly where the study-by-study recursion does, and two batches
    # give the state one batch gives.
    design = design_bernoulli(0.10, 0.20, arl0=200)
    x = (np.random.default_rng(17).random(3000) < 0.15).astype(int)
    s, expected = 0, []
    for i, xi in enumerate(x):
        s = max(0, s + (design.up if xi else -design.down))
        if s >= design.limit:
            expected.append(i)
            s = 0
    whole = update(design, CusumState(), x)
    assert list(whole.alarms) == expected and len(expected) >= 2
    assert whole.state == CusumState(s, 3000, len(expected), expected[-1])
    first = update(design, CusumState(), x[:1234])
    second = update(design, first.state, x[1234:])
    assert second.state == whole.state
    assert list(first.alarms) + [1234 + i for i in second.alarms] == expected


def test_state_and_design_round_trip_as_plain_data():
    design = design_bernoulli(0.08, 0.13, arl0=500)
    state = update(design, CusumState(), [1, 1, 0, 1] * 30).state
    for value in (design, state, design_normal(0.5, 500)):
        text = json.dumps(value.to_state())  # plain data: JSON, never a pickle
        assert type(value).from_state(json.loads(text)) == value
    assert CusumState.from_state(CusumState().to_state()) == CusumState()
    assert isinstance(BernoulliCusumDesign.from_state(design.to_state()).limit, int)
    assert NormalCusumDesign.from_state(design_normal(1.0, 200).to_state()).k == 0.5


def test_shift_is_detected_and_a_quiet_day_raises_no_alarm():
    # The hospital design: discrepancy rate 0.05, ARL0 = 18,000 studies (90 days × 200).
    # Seed 18. (a) 300 in-control days of 200 studies, each from a fresh chart: a false alarm
    # on a given day has probability ≈ 200/18,000 ≈ 1.1% (1 − exp(−200/ARL0)), so ≤ 10 of
    # 300 (expected 3.3; P(≥ 11) < 0.1%). (b) 60 streams with 2,000 in-control studies then
    # p1 = 0.10: at least 54 of 60 (90%) alarm after the change and within 4 × ARL1 of it.
    design = design_bernoulli(0.05, 0.10, arl0=18_000)
    rng = np.random.default_rng(18)
    false_days = sum(bool(update(design, CusumState(), rng.random(200) < 0.05).alarms)
                     for _ in range(300))  # fmt: skip
    assert false_days <= 10, false_days
    change, detected = 2000, 0
    for _ in range(60):
        x = np.concatenate([rng.random(change) < 0.05, rng.random(8000) < 0.10])
        alarms = [a for a in update(design, CusumState(), x).alarms if a >= change]
        detected += bool(alarms) and alarms[0] - change < 4 * design.arl1
    assert detected >= 54, detected


def test_guarded_design_holds_its_arl0_at_the_upper_bound_of_p0():
    # p0 = 0.05 estimated on 1,000 reference studies: its 90% Clopper–Pearson upper bound
    # is ~0.060 (scipy's beta quantile; ±0.001). The guarded chart keeps p0's weights, reaches
    # the target ARL0 even at the bound, and pays with a longer delay at p1.
    guard = upper_rate(0.05, 1000, 0.9)
    assert guard == pytest.approx(0.060, abs=0.001)
    plain = design_bernoulli(0.05, 0.10, arl0=2000)
    guarded = design_bernoulli(0.05, 0.10, arl0=2000, guard=guard)
    assert (guarded.up, guarded.down) == (plain.up, plain.down)
    assert guarded.arl(guard) >= 2000 > plain.arl(guard)
    assert guarded.arl0_achieved == pytest.approx(guarded.arl(guard))
    assert guarded.arl1 > plain.arl1
    with pytest.raises(PerformanceError, match="guard"):
        design_bernoulli(0.05, 0.10, arl0=2000, guard=0.04)


def test_metric_indicators_select_the_denominator():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    calls = np.array([1, 0, 1, 0, 1, 0, 0])
    assert indicators("discrepancy", labels, calls).tolist() == [0, 1, 0, 0, 1, 0, 0]
    assert indicators("sensitivity", labels, calls).tolist() == [0, 1, 0]  # misses
    assert indicators("specificity", labels, calls).tolist() == [0, 1, 0, 0]  # false calls
    with pytest.raises(PerformanceError, match="unknown metric"):
        indicators("auroc", labels, calls)


def test_invalid_designs_and_streams_are_refused():
    with pytest.raises(PerformanceError):
        design_bernoulli(0.2, 0.1, arl0=100)
    with pytest.raises(PerformanceError):
        design_bernoulli(0.1, 0.2, arl0=1)
    with pytest.raises(PerformanceError, match="0/1"):
        update(design_bernoulli(0.1, 0.2, 100), CusumState(), [0, 2, 1])


def test_normal_cusum_matches_published_run_lengths():
    # One-sided normal CUSUM, k = 0.5: ARL0 ≈ 336 at h = 4 and ≈ 930 at h = 5, ARL1 ≈ 8.38
    # at a 1 σ shift with h = 4 (Siegmund 1985; twice the two-sided 168/465 of Montgomery's
    # table). Tolerance 1%.
    assert normal_cusum_arl(0.5, 4.0) == pytest.approx(336, rel=0.01)
    assert normal_cusum_arl(0.5, 5.0) == pytest.approx(930, rel=0.01)
    assert normal_cusum_arl(0.5, 4.0, mu=1.0) == pytest.approx(8.38, rel=0.01)
    design = design_normal(1.0, 370)
    assert design.k == 0.5 and design.arl0_achieved == pytest.approx(370, rel=1e-6)
    assert 4.0 < design.h < 4.2 and design.arl1 < 9

"""detectors/false_alarm_budget.py: the settings derived from a budget keep to it, pure checks.

No randomness: the volumes are a fixed geometric grid (1 to 10⁶ studies a day, 400 points);
the measured false-incident rate of the derived settings is tests/monitor/drift/
test_budget_calibration.py's.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from detectors.false_alarm_budget import (
    ALPHA_CAP,
    ALPHA_FLOOR,
    CUSUM,
    DRIFT,
    MAX_PERSISTENCE,
    MAX_SPAN_DAYS,
    ONLINE,
    ONLINE_MAX_ERT,
    ONLINE_SHARE,
    PERFORMANCE,
    SHARES,
    BudgetError,
    FalseAlarmBudget,
    Volume,
    derive,
    windowed_rule,
)

GRID = np.geomspace(1, 1e6, 400)  # studies a day
BUDGET = FalseAlarmBudget()
# α is rounded DOWN to three significant digits (_round): at most 1% below the exact value,
# never above, so α^k never exceeds the allowance q.
ROUNDING = 1.01


def _volume(per_day: float, labelled_share: float = 0.2) -> Volume:
    return Volume(per_day, per_day * labelled_share, "grid")


def _rules(per_day: float, online: bool = False):
    d = derive(BUDGET, _volume(per_day), online=online)
    return d, (d.drift, d.performance)


def test_known_volumes_give_the_documented_settings():
    # A typical site (200 a day: one window of 200 a day) and the synthetic hospital (2,880 a
    # day: 14.4 windows) — the settings the power and calibration tests run with.
    assert (derive(BUDGET, _volume(200)).drift.alpha,
            derive(BUDGET, _volume(200)).drift.open_after) == (0.05, 2)  # fmt: skip
    hospital = derive(BUDGET, _volume(2880))
    assert (hospital.drift.alpha, hospital.drift.open_after) == (0.05, 3)
    assert hospital.drift.windows_per_day == pytest.approx(14.4)
    # The CUSUM's in-control run length is the labelled studies per false alarm: 40 labels a
    # day and a quarter of one incident per 90 days → 14,400.
    assert derive(BUDGET, Volume(200, 40, "x")).cusum_arl0 == 14_400


@pytest.mark.parametrize("per_day", GRID[::40], ids=lambda v: f"{v:.0f}/day")
def test_k_is_the_smallest_persistence_whose_alpha_stays_above_the_floor(per_day):
    _, rules = _rules(per_day)
    for rule in rules:
        q = rule.per_window
        k = rule.open_after
        assert 2 <= k <= MAX_PERSISTENCE
        if k < MAX_PERSISTENCE:
            assert q ** (1 / k) >= ALPHA_FLOOR
        if k > 2:  # one window less would have pushed α below the floor
            assert q ** (1 / (k - 1)) < ALPHA_FLOOR
        exact = min(ALPHA_CAP, q ** (1 / k))
        assert exact / ROUNDING <= rule.alpha <= exact


def test_alpha_and_persistence_stay_within_their_bounds_and_meet_q():
    for per_day in GRID:
        _, rules = _rules(per_day)
        for rule in rules:
            assert 0 < rule.alpha <= ALPHA_CAP
            assert rule.open_after == MAX_PERSISTENCE or rule.alpha >= ALPHA_FLOOR
            # The rule's false opens per window (independent windows) within the allowance.
            assert rule.alpha**rule.open_after <= rule.per_window * (1 + 1e-12)
            # The recorded bound is the rule detection runs with (the rounded α).
            assert rule.per_window_bound == pytest.approx(rule.alpha**rule.open_after)


def test_more_volume_never_loosens_a_channel_and_the_total_stays_within_the_budget():
    last_bound, last_k = math.inf, 0
    for per_day in GRID:
        d, _ = _rules(per_day)
        bound = d.drift.alpha**d.drift.open_after
        # More windows a day share the same daily allowance: each may open less often, and
        # the persistence never shortens.
        assert bound <= last_bound * (1 + 1e-12)
        assert d.drift.open_after >= last_k
        last_bound, last_k = bound, d.drift.open_after
        assert d.drift.per_period_bound <= BUDGET.incidents * SHARES[DRIFT] * (1 + 1e-9)
        assert d.performance.per_period_bound <= BUDGET.incidents * SHARES[PERFORMANCE] * (1 + 1e-9)
        for online in (False, True):
            total = derive(BUDGET, _volume(per_day), online=online).expected_false_incidents
            assert total <= BUDGET.incidents * ROUNDING, (per_day, online, total)


def test_a_looser_budget_never_asks_for_more_persistence():
    for per_day in (50, 200, 2880, 10_000):
        ks = [derive(FalseAlarmBudget(n, 90), _volume(per_day)).drift.open_after
              for n in (0.25, 0.5, 1, 2, 4, 8)]  # fmt: skip
        assert ks == sorted(ks, reverse=True), (per_day, ks)


def test_a_window_closes_in_time_at_low_volume():
    # 10 studies a day fill a window of 200 in 20 days, but it closes after MAX_SPAN_DAYS.
    rule = derive(BUDGET, _volume(10)).drift
    assert rule.windows_per_day == pytest.approx(1 / MAX_SPAN_DAYS)
    assert rule.per_window == pytest.approx(BUDGET.per_day * SHARES[DRIFT] * MAX_SPAN_DAYS)


def test_shares_add_up_and_the_online_detector_takes_its_share_only_when_on():
    off = derive(BUDGET, _volume(200))
    on = derive(BUDGET, _volume(200), online=True)
    assert sum(off.shares.values()) == pytest.approx(1)
    assert sum(on.shares.values()) == pytest.approx(1)
    assert ONLINE not in off.shares and off.online_ert is None and "off" in off.online_note
    assert on.shares[ONLINE] == ONLINE_SHARE
    assert on.shares[CUSUM] == pytest.approx(SHARES[CUSUM] * (1 - ONLINE_SHARE))
    # ERT: studies per false online alarm = 200 a day / (1/90 × 0.2) = 90,000.
    assert on.online_ert == 90_000
    assert on.online_ert > ONLINE_MAX_ERT and f"{ONLINE_MAX_ERT:,}" in on.online_note


def test_the_derivation_is_recorded_as_data_and_read_as_lines():
    d = derive(BUDGET, _volume(2880))
    json.dumps(d.as_dict())  # the audit trail stores it as JSON
    assert d.settings() == {"drift_alpha": 0.05, "drift_open_after": 3,
                            "performance_alpha": d.performance.alpha,
                            "performance_open_after": d.performance.open_after,
                            "cusum_arl0": d.cusum_arl0, "online_ert": None}  # fmt: skip
    text = "\n".join(d.lines())
    assert "open after 3 consecutive firing windows" in text and "2,880 studies/day" in text


BAD = {
    "no incidents": lambda: FalseAlarmBudget(0, 90),
    "negative incidents": lambda: FalseAlarmBudget(-1, 90),
    "NaN incidents": lambda: FalseAlarmBudget(math.nan, 90),
    "infinite period": lambda: FalseAlarmBudget(1, math.inf),
    "no days": lambda: FalseAlarmBudget(1, 0),
    "text incidents": lambda: FalseAlarmBudget("1", 90),  # type: ignore[arg-type]
    "no studies": lambda: Volume(0, 0, "x"),
    "negative studies": lambda: Volume(-5, 0, "x"),
    "NaN studies": lambda: Volume(math.nan, 0, "x"),
    "infinite studies": lambda: Volume(math.inf, 0, "x"),
    "negative labels": lambda: Volume(200, -1, "x"),
    "NaN labels": lambda: Volume(200, math.nan, "x"),
    "empty window": lambda: windowed_rule(0.01, 200, 0),
    "empty drift window": lambda: derive(BUDGET, _volume(200), drift_window=0),
    "negative performance window": lambda: derive(BUDGET, _volume(200), performance_window=-500),
}


@pytest.mark.parametrize("make", BAD.values(), ids=BAD.keys())
def test_bad_input_is_refused_with_a_budget_error(make):
    with pytest.raises(BudgetError):
        make()

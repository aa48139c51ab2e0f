"""Small exact checks of the drift building blocks: BH/Bonferroni, never-seen values,
change point, permutation p-values, the alert persistence/hysteresis rule."""

from __future__ import annotations

import math

import numpy as np

from detectors import categorical, changepoint
from detectors.alibi_backend import permutation_p_value
from detectors.multiple_testing import adjust, benjamini_hochberg, bonferroni
from monitor.alerts import AlertPolicy, Streak, step


def test_benjamini_hochberg_matches_hand_computation():
    # m = 4: sorted p (0.01, 0.02, 0.03, 0.5) → (0.04, 0.04, 0.04, 0.5) after the step-up.
    assert np.allclose(benjamini_hochberg([0.03, 0.01, 0.5, 0.02]), [0.04, 0.04, 0.5, 0.04])
    assert bonferroni([0.01, 0.3]) == [0.02, 0.6]
    out = adjust([0.01, math.nan], "bh")
    assert out[0] == 0.01 and math.isnan(out[1])


def test_never_seen_value_is_a_finding_with_small_p():
    vocab = categorical.Vocabulary.fit("Manufacturer", ["ACME"] * 600 + ["Borealis"] * 400)
    found = categorical.new_values(vocab, ["ACME"] * 50 + ["Zenith"] * 10)
    assert found.values == (("Zenith", 10),) and found.p_value < 1e-10
    assert categorical.new_values(vocab, ["ACME"] * 60).p_value == 1.0
    rows = categorical.share_table(vocab, ["ACME"] * 50 + ["Zenith"] * 10)
    assert rows[0][:2] == ("Borealis", 0.0)  # 40% in the reference, absent now: the largest move
    ref_txt, cur_txt = categorical.describe_shift(
        [("Zenith", 10 / 60, 0.0)], "Manufacturer")  # fmt: skip
    assert (
        cur_txt == "'Zenith' 17% of window" and ref_txt == "Manufacturer: 'Zenith' 0% in reference"
    )


def test_change_point_finds_a_step():
    rng = np.random.default_rng(0)  # seed 0, n = 300, step of 1 sd at 180; tolerance ±10
    x = np.concatenate([rng.normal(0, 1, 180), rng.normal(1, 1, 120)])
    cp = changepoint.mean_shift(x)
    assert cp is not None and abs(cp.index - 180) <= 10 and cp.after_mean > cp.before_mean


def test_permutation_p_value_exact_in_bulk_and_tail_beyond():
    null = np.random.default_rng(1).normal(size=100)
    assert permutation_p_value(0.0, null) == (1 + (null >= 0).sum()) / 101
    tail = permutation_p_value(6.0, null)
    assert 0 < tail < 1 / 101


def test_alert_rule_opens_after_two_and_resolves_after_three_quiet():
    policy, s, actions = AlertPolicy(), Streak(), []
    active = False
    for fire in (True, False, True, True, True, False, False, False):
        s, action = step(s, firing=fire, immediate=False, active=active, policy=policy)
        actions.append(action)
        active = (active or action == "open") and action != "resolve"
    assert actions == [None, None, None, "open", None, None, None, "resolve"]
    _, action = step(Streak(), firing=True, immediate=True, active=False, policy=policy)
    assert action == "open"

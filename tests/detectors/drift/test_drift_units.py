"""Small exact checks of the drift building blocks: BH/Bonferroni (plain and weighted) and
the window's weights, KS against scipy, never-seen values, change point, permutation
p-values, the alert persistence/hysteresis rule."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from detectors.drift import categorical, changepoint
from detectors.drift.alibi_backend import ks_two_sample, permutation_p_value
from detectors.drift.contract import ALL, SuiteConfig, family_weights
from detectors.drift.multiple_testing import adjust, benjamini_hochberg, bonferroni
from detectors.drift.results import DriftResult, FeatureFinding, Status
from monitor.alerts.lifecycle import AlertPolicy, Streak, step


def test_benjamini_hochberg_matches_hand_computation():
    # m = 4: sorted p (0.01, 0.02, 0.03, 0.5) → (0.04, 0.04, 0.04, 0.5) after the step-up.
    assert np.allclose(benjamini_hochberg([0.03, 0.01, 0.5, 0.02]), [0.04, 0.04, 0.5, 0.04])
    assert bonferroni([0.01, 0.3]) == [0.02, 0.6]
    out = adjust([0.01, math.nan], "bh")
    assert out[0] == 0.01 and math.isnan(out[1])


def test_weighted_bh_matches_hand_computation_and_reduces_to_bh():
    p = [0.03, 0.01, 0.5, 0.02]
    assert np.allclose(benjamini_hochberg(p, [2.0, 2.0, 2.0, 2.0]), benjamini_hochberg(p))
    # Weights (3, 1/3, 1/3, 1/3) average 1: q = p / w = (0.01, 0.03, 1.5, 0.06);
    # sorted q·m/rank = (0.04, 0.06, 0.08, 1.5) → step-up (0.04, 0.06, 0.08, 1 capped).
    out = benjamini_hochberg(p, [3.0, 1 / 3, 1 / 3, 1 / 3])
    assert np.allclose(out, [0.04, 0.06, 1.0, 0.08])
    assert np.allclose(bonferroni([0.01, 0.3], [1.5, 0.5]), [0.02 / 1.5, 1.0])


def _result(signal: str, n_features: int) -> DriftResult:
    feats = tuple(FeatureFinding(feature=f"f{i}", test="ks", p_value=0.5, statistic=0.1,
                                 effect_size=0.1, reference="", current="")
                  for i in range(n_features))  # fmt: skip
    return DriftResult(detector=f"ks:{signal}", signal=signal, status=Status.OK, p_value=0.5,
                       n_window=100, n_reference=100, features=feats)  # fmt: skip


def test_family_weights_give_the_whole_model_its_share_and_each_signal_an_equal_part():
    whole = [_result("scores", 1), _result("image_quality", 19)]
    site = [_result("scores", 1), _result("image_quality", 19)]
    weights = family_weights([(ALL, whole), (("site", "a"), site)], SuiteConfig())
    assert len(weights) == 40 and math.isclose(sum(weights), 1.0)
    assert math.isclose(weights[0], 0.25) and math.isclose(sum(weights[1:20]), 0.25)
    assert math.isclose(sum(weights[20:]), 0.5)  # the strata's share


def test_ks_two_sample_matches_scipy():
    """D equals scipy's; p within 0.02 of scipy's exact p (seeds 0–19, n = 750 vs 200,
    shifts 0–0.4 sd)."""
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ref, cur = rng.normal(size=750), rng.normal(0.02 * seed, 1.0, size=200)
        d, p = ks_two_sample(np.sort(ref), cur)
        exact = stats.ks_2samp(ref, cur, method="exact")
        assert math.isclose(d, exact.statistic, abs_tol=1e-12)
        assert abs(p - exact.pvalue) <= 0.02 and p >= exact.pvalue - 0.005, (seed, p, exact)


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


def test_chi_square_via_scipy_gives_alibis_p_values():
    """categorical.chi2_test on a fixed example equals alibi-detect's ChiSquareDrift, which it
    replaces: rare values pooled, a never-seen value, and the 2-column (Yates) case."""
    from alibi_detect.cd import ChiSquareDrift

    ref = ["ACME"] * 500 + ["Borealis"] * 300 + ["Cobalt"] * 195 + ["Dyna"] * 5
    cases = [
        ["ACME"] * 60 + ["Borealis"] * 20 + ["Cobalt"] * 15 + ["Dyna"] * 3 + ["Zenith"] * 12,
        ["ACME"] * 48 + ["Borealis"] * 31 + ["Cobalt"] * 21,
        ["Borealis"] * 70 + ["Cobalt"] * 30,
    ]
    vocab = categorical.Vocabulary.fit("Manufacturer", ref, rare_share=0.01)
    alibi = ChiSquareDrift(vocab.encode(ref).reshape(-1, 1), p_val=0.05)
    found = []
    for window in cases:
        codes = vocab.encode(window)
        p_vals, dists = alibi.score(codes.reshape(-1, 1))
        p, statistic = categorical.chi2_test(vocab, codes)
        assert (p, statistic) == (float(p_vals[0]), float(dists[0]))
        found.append(p)
    assert found[0] < 1e-6 and found[1] > 0.05 and found[2] < 1e-6
    two = categorical.Vocabulary.fit("PatientSex", ["F"] * 300 + ["M"] * 200)
    codes = two.encode(["F"] * 30 + ["M"] * 50)  # one degree of freedom: Yates' correction
    p_vals, dists = ChiSquareDrift(two.encode(["F"] * 300 + ["M"] * 200).reshape(-1, 1)).score(
        codes.reshape(-1, 1)
    )
    assert categorical.chi2_test(two, codes) == (float(p_vals[0]), float(dists[0]))


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


def test_scalar_ks_frozen_before_the_vectorised_ks_still_scores():
    """References pickled with (alibi KSDrift, sorted values) pairs load and score alike
    (such pickles are read only by `radwatch reference migrate-pickles`)."""
    import pickle

    from detectors.drift.alibi_backend import ScalarKS
    from detectors.drift.contract import Sample

    rng = np.random.default_rng(3)
    ref = Sample(ids=tuple(map(str, range(300))), scalars={"scores": {"s": rng.normal(size=300)}})
    win = Sample(ids=tuple(map(str, range(100))), scalars={"scores": {"s": rng.normal(size=100)}})
    new = ScalarKS("scores").fit(ref)
    old = ScalarKS("scores")
    old.__dict__.update(signal="scores", name="ks:scores",
                        features={"s": ("an alibi KSDrift", new.features["s"])})  # fmt: skip
    revived = pickle.loads(pickle.dumps(old))
    assert revived.score(win).p_value == new.score(win).p_value

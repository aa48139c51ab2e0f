"""The vectorised two-sample KS against scipy's exact test, and ScalarKS objects frozen before
it (pickled (alibi KSDrift, sorted values) pairs) still scoring alike."""

from __future__ import annotations

import math
import pickle

import numpy as np
from scipy import stats

from detectors.drift.contract import Sample
from detectors.drift.ks import ScalarKS, ks_two_sample


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


def test_scalar_ks_frozen_before_the_vectorised_ks_still_scores():
    """References pickled with (alibi KSDrift, sorted values) pairs load and score alike
    (such pickles are read only by `radwatch reference migrate-pickles`)."""
    rng = np.random.default_rng(3)
    ref = Sample(ids=tuple(map(str, range(300))), scalars={"scores": {"s": rng.normal(size=300)}})
    win = Sample(ids=tuple(map(str, range(100))), scalars={"scores": {"s": rng.normal(size=100)}})
    new = ScalarKS("scores").fit(ref)
    old = ScalarKS("scores")
    old.__dict__.update(signal="scores", name="ks:scores",
                        features={"s": ("an alibi KSDrift", new.features["s"])})  # fmt: skip
    revived = pickle.loads(pickle.dumps(old))
    assert revived.score(win).p_value == new.score(win).p_value

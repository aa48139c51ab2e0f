"""Benjamini–Hochberg and Bonferroni, plain and weighted, against hand computations."""

from __future__ import annotations

import math

import numpy as np

from detectors.drift.multiple_testing import adjust, benjamini_hochberg, bonferroni


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

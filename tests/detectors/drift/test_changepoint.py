"""The onset estimate: a single change in mean found where it is (seeded, tolerance ±10)."""

from __future__ import annotations

import numpy as np

from detectors.drift import changepoint


def test_change_point_finds_a_step():
    rng = np.random.default_rng(0)  # seed 0, n = 300, step of 1 sd at 180; tolerance ±10
    x = np.concatenate([rng.normal(0, 1, 180), rng.normal(1, 1, 120)])
    cp = changepoint.mean_shift(x)
    assert cp is not None and abs(cp.index - 180) <= 10 and cp.after_mean > cp.before_mean

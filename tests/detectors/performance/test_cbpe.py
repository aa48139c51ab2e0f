"""detectors/performance/cbpe.py: label-free estimates track realised performance under covariate shift,
and are flagged unreliable under prevalence change and outside the reference."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.performance.cbpe import estimate, expected_auroc, fit_calibrator
from detectors.performance.realised import evaluate


def _covariate_world(rng: np.random.Generator, n: int, mu: float):
    # P(y | x) fixed (pure covariate shift moves only x); the model's score is a monotone
    # but miscalibrated function of x, so CBPE has to calibrate it on the reference.
    x = rng.normal(mu, 1.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(2.2 * x - 2.0)))).astype(int)
    score = 1 / (1 + np.exp(-(1.3 * x - 0.4) + rng.normal(0, 0.05, n)))
    return y, score


def _label_shift_world(rng: np.random.Generator, n: int, prevalence: float):
    # P(score | y) fixed, prevalence moves (the prevalence-change scenario).
    y = (rng.random(n) < prevalence).astype(int)
    score = np.where(y == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))
    return y, score


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_cbpe_tracks_realised_under_pure_covariate_shift(method: str) -> None:
    # Seeds 0..4; reference 4000 studies at mu=0, window 3000 studies at mu=0.8 (prevalence
    # moves from ~0.20 to ~0.40 through x alone). Tolerance: |estimated − realised| ≤ 0.035
    # for sensitivity, specificity and AUROC, and the realised value inside the band in at
    # least 4 of 5 seeds per metric; the labels confirm the calibration (no concept shift).
    # The moved prevalence itself is reported (scores cannot tell it from label shift).
    inside = {"sensitivity": 0, "specificity": 0, "auroc": 0}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        cal = fit_calibrator(*_covariate_world(rng, 4000, 0.0), method=method)
        y, s = _covariate_world(rng, 3000, 0.8)
        est = estimate(cal, s, 0.5, labelled=(y, s), seed=seed)
        real = evaluate(y, s, 0.5)
        rel = est.reliability
        assert rel is not None and not rel.concept_shift and not rel.outside_reference, rel
        assert rel.prevalence_shift and "calibration still holds" in rel.reasons[0]
        for name in inside:
            e, r = est.metrics()[name], real.metrics()[name]
            assert e.value is not None and r.value is not None
            assert abs(e.value - r.value) <= 0.035, (seed, name, e, r)
            inside[name] += e.lower <= r.value <= e.upper  # type: ignore[operator]
    assert all(v >= 4 for v in inside.values()), inside


def test_cbpe_flags_prevalence_change_as_unreliable() -> None:
    # Seeds 0..4; reference prevalence 0.2 (3000 studies); window prevalence 0.45 with 400
    # labelled studies: flagged every time. The same window size at unchanged prevalence
    # is not flagged in any of the 5 seeds (per-window alpha 0.01).
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        cal = fit_calibrator(*_label_shift_world(rng, 3000, 0.2))
        y, s = _label_shift_world(rng, 400, 0.45)
        rel = estimate(cal, s, 0.5, labelled=(y, s)).reliability
        assert rel is not None and rel.prevalence_shift and not rel.reliable
        assert any("prevalence shift" in r for r in rel.reasons)
        y0, s0 = _label_shift_world(rng, 400, 0.2)
        rel0 = estimate(cal, s0, 0.5, labelled=(y0, s0)).reliability
        assert rel0 is not None and rel0.reliable, rel0


def test_cbpe_flags_inputs_outside_the_reference() -> None:
    rng = np.random.default_rng(7)
    y = (rng.random(2000) < 0.3).astype(int)
    s = np.clip(0.15 + 0.3 * y + rng.normal(0, 0.08, 2000), 0.0, 0.6)
    cal = fit_calibrator(y, s)
    window = rng.uniform(0.7, 1.0, 300)  # the model now says things it never said before
    rel = estimate(cal, window, 0.5).reliability
    assert rel is not None and rel.outside_reference and not rel.reliable
    assert rel.outside_share > 0.9


def test_expected_auroc_is_the_mean_of_sampled_auroc() -> None:
    # Seed 3, 300 studies, 300 label draws scored by scikit-learn: the closed form equals
    # the Monte Carlo mean within 0.006 (its standard error is ~0.002).
    rng = np.random.default_rng(3)
    s = rng.random(300)
    p = 0.1 + 0.8 * s
    ys = rng.random((300, 300)) < p
    mc = np.mean([roc_auc_score(y, s) for y in ys])
    assert expected_auroc(p, s) == pytest.approx(mc, abs=0.006)


def test_too_few_studies_is_insufficient_data() -> None:
    rng = np.random.default_rng(0)
    cal = fit_calibrator(*_label_shift_world(rng, 500, 0.3))
    est = estimate(cal, rng.random(10), 0.5)
    assert est.status.value == "insufficient_data" and est.auroc.value is None

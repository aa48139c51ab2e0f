"""The fitted suite: the window's multiple-testing weights, and the calibration and power of
the windowed drift suite (pure computation, no servers).

Seeded synthetic hospital samples (three sites, a scanner per site, 16-d embeddings, one
score, KVP, categorical DICOM attributes). Calibration: 200 no-shift windows of 100 events
against a 1,000-event reference; per-window false-alarm rate of every test and of the
window as a whole ≤ α + 3·sqrt(α(1−α)/200) (binomial tolerance, ≈ 0.096 at α = 0.05), and
the persistence rule (2 consecutive windows) opens no alert. Power: shifted windows are
flagged in ≥ 90% of 20 seeded windows, in the right stratum and signal.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest

from detectors.drift.contract import ALL, Sample
from detectors.drift.fitting import fit_suite
from detectors.drift.results import DriftResult, FeatureFinding, Status
from detectors.drift.suite import SuiteConfig, family_weights
from monitor.alerts.lifecycle import AlertPolicy, Streak, step

SITES = (("north-general", "ACME", "X1"), ("south-clinic", "Borealis", "B-200"),
         ("east-imaging", "ACME", "X2"))  # fmt: skip
ATTRS = ("Manufacturer", "ManufacturerModelName", "PhotometricInterpretation", "PatientSex")
ALPHA = 0.05
N_WINDOWS = 200
TOLERANCE = 3 * math.sqrt(ALPHA * (1 - ALPHA) / N_WINDOWS)
CONFIG = SuiteConfig(alpha=ALPHA, calibration_window=100, calibration_windows=10, min_window=20,
                     online=False, strata_kinds=("scanner",), mmd_permutations=100)  # fmt: skip


def sample(n: int, rng: np.random.Generator, *, inversion: float = 0.0,
           embedding_shift: float = 0.0, score_shift: float = 0.0) -> Sample:  # fmt: skip
    """`inversion`: share of east-imaging (ACME X2) studies written MONOCHROME1 with
    inverted-looking embeddings and lower scores, as the inversion bug would."""
    site_idx = rng.integers(3, size=n)
    sites = np.array([SITES[i][0] for i in site_idx], dtype=object)
    vendor = np.array([SITES[i][1] for i in site_idx], dtype=object)
    model = np.array([SITES[i][2] for i in site_idx], dtype=object)
    photometric = np.array(["MONOCHROME2"] * n, dtype=object)
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    score = rng.beta(2, 5, size=n) + score_shift
    emb[:, 0] += embedding_shift
    hit = (site_idx == 2) & (rng.random(n) < inversion)
    photometric[hit] = "MONOCHROME1"
    emb[hit, :4] -= 1.0
    score[hit] = rng.beta(1, 6, size=int(hit.sum()))
    sex = rng.choice(np.array(["F", "M"], dtype=object), size=n)
    scanner = np.array([f"{v} {m}" for v, m in zip(vendor, model, strict=True)], dtype=object)
    return Sample(
        ids=tuple(f"s{i}" for i in range(n)),
        vectors={"model_embedding": emb},
        scalars={"scores": {"nodule": score}, "acquisition": {"KVP": rng.normal(110, 5, n)}},
        categories={"Manufacturer": vendor, "ManufacturerModelName": model,
                    "PhotometricInterpretation": photometric, "PatientSex": sex},
        strata={"site": sites, "scanner": scanner},
    )  # fmt: skip


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


@pytest.fixture(scope="module")
def suite():
    return fit_suite(sample(1000, np.random.default_rng(11)), CONFIG, categorical_attributes=ATTRS)


def test_fit_records_empirical_false_alarm_rate(suite):
    cal = suite.calibration
    assert cal is not None and cal.windows == 10 and cal.window_size == 100
    assert set(cal.false_alarm) == {d.name for d in suite.strata[ALL].detectors}
    assert all(rate <= 0.3 for rate in cal.false_alarm.values()), cal.false_alarm


def test_no_shift_false_alarm_rate_and_no_alert(suite):
    rng = np.random.default_rng(12)
    per_test: dict[str, int] = defaultdict(int)
    any_drift = 0
    streaks: dict[tuple[str, str, str], Streak] = defaultdict(Streak)
    opened = []
    for w in range(N_WINDOWS):
        verdicts = suite.score(sample(100, rng), seed=w)
        fired = False
        for v in verdicts:
            by_signal: dict[str, bool] = defaultdict(bool)
            for r in v.results:
                if r.status in (Status.OK, Status.DRIFT):
                    by_signal[r.signal] |= r.status == Status.DRIFT
                    if (v.kind, v.value) == ALL and r.status == Status.DRIFT:
                        per_test[r.detector] += 1
            for signal, fire in by_signal.items():
                key = (v.kind, v.value, signal)
                streaks[key], action = step(streaks[key], firing=fire, immediate=False,
                                            active=False, policy=AlertPolicy())  # fmt: skip
                if action == "open":
                    opened.append((w, key))
                fired |= fire
        any_drift += fired
    for name, count in per_test.items():
        assert count / N_WINDOWS <= ALPHA + TOLERANCE, (name, count)
    assert any_drift / N_WINDOWS <= ALPHA + TOLERANCE, any_drift
    assert opened == []


def test_inversion_detected_in_right_stratum_and_signal(suite):
    """Half the east-imaging studies inverted: ≥ 18 of 20 windows flag PhotometricInterpretation
    in the east-imaging / ACME X2 strata (signal 'acquisition')."""
    rng = np.random.default_rng(13)
    hits = 0
    for w in range(20):
        verdicts = {(v.kind, v.value): v for v in suite.score(sample(200, rng, inversion=0.5),
                                                               seed=w)}  # fmt: skip
        v = verdicts[("scanner", "ACME X2")]
        chi = next(r for r in v.results if r.detector == "chi2:acquisition")
        top = chi.top_features(1)[0]
        if chi.status == Status.DRIFT and top.feature == "PhotometricInterpretation":
            hits += 1
    assert hits >= 18, hits


def test_embedding_shift_detected_by_mmd(suite):
    rng = np.random.default_rng(14)
    hits = 0
    for w in range(20):
        verdicts = suite.score(sample(200, rng, embedding_shift=0.5), seed=w)
        whole = next(v for v in verdicts if (v.kind, v.value) == ALL)
        mmd = next(r for r in whole.results if r.detector == "mmd:model_embedding")
        hits += mmd.status == Status.DRIFT
        assert whole.drift_score > 0
    assert hits >= 18, hits

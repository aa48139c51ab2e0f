"""The windowed-detector contract carries what the monitor needs (issue 14, item 3).

Each detector says itself what one study's number is for an alert's onset (`indicator`) and
how a whole-signal result reads in one line (`summary`); monitor/drift/scheduler.py only calls
them. A new kind of test, named in a way the monitor has never seen, gets both.
Seeded samples of 300 reference and 120 window studies with a clear shift (tolerances: none;
the checks are shapes and which detector answered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self

import numpy as np
import pytest
from test_artifact import ATTRS, CONFIG, sample

from detectors.drift.contract import ALL, Sample
from detectors.drift.fitting import fit_suite
from detectors.drift.results import DriftResult, Status
from detectors.drift.suite import FittedStratum
from monitor.drift.decisions import indicator, summaries


@pytest.fixture(scope="module")
def scored():
    suite = fit_suite(sample(300, 3), CONFIG, categorical_attributes=ATTRS)
    window = sample(120, 4, shift=1.5)
    verdict = next(v for v in suite.score(window, seed=1) if (v.kind, v.value) == ALL)
    return suite, window, {r.detector: r for r in verdict.results}


def test_every_detector_gives_a_per_study_indicator_and_says_if_it_has_a_summary(scored):
    suite, window, results = scored
    by_name = {d.name: d for d in suite.strata[ALL].detectors}
    seen = set()
    for name, result in results.items():
        if result.status not in (Status.OK, Status.DRIFT):
            continue
        detector = by_name[name]
        series = detector.indicator(window, result)
        assert series is not None and series.ndim == 1 and 0 < len(series) <= len(window), name
        assert np.isfinite(series).all(), name
        text = detector.summary(result)
        # Whole-signal tests read themselves; per-feature tests leave it to their findings.
        assert (text is not None) == (not result.features), (name, text)
        seen.add(name.split(":")[0])
    assert {"mmd", "ks", "chi2"} <= seen
    # What the monitor uses is exactly what the detector gives.
    mmd = results["mmd:model_embedding"]
    assert np.array_equal(indicator(suite, ALL, [mmd], window),
                          by_name["mmd:model_embedding"].indicator(window, mmd))  # fmt: skip
    assert summaries(suite, ALL, [mmd]) == {
        "mmd:model_embedding": by_name["mmd:model_embedding"].summary(mmd)
    }


@dataclass
class MeanShift:
    """A detector kind the monitor has never heard of (a stand-in for, say, LSDD)."""

    signal: str = "model_embedding"
    name: str = "lsdd:model_embedding"

    def fit(self, reference: Sample) -> Self:
        self.mean = reference.vectors[self.signal].mean(0)
        return self

    def score(self, window: Sample, *, seed: int = 0) -> DriftResult:
        shift = float(np.linalg.norm(window.vectors[self.signal].mean(0) - self.mean))
        return DriftResult(detector=self.name, signal=self.signal, status=Status.DRIFT,
                           p_value=1e-6, effect_size=shift, adjusted_p=1e-6)  # fmt: skip

    def indicator(self, window: Sample, result: DriftResult) -> np.ndarray | None:
        return np.linalg.norm(window.vectors[self.signal] - self.mean, axis=1)

    def summary(self, result: DriftResult) -> str | None:
        return f"mean moved by {result.effect_size:.2f}"


def test_a_new_kind_of_test_gets_an_onset_series_and_a_summary_without_monitor_changes(scored):
    suite, window, _ = scored
    toy = MeanShift().fit(sample(300, 3))
    suite.strata[("site", "lsdd-test")] = FittedStratum("site", "lsdd-test", 300, [toy])
    try:
        result = toy.score(window)
        series = indicator(suite, ("site", "lsdd-test"), [result], window)
        assert series is not None and len(series) == len(window)
        assert series.mean() > 1.0  # the shifted window sits away from the reference mean
        assert summaries(suite, ("site", "lsdd-test"), [result]) == {
            "lsdd:model_embedding": f"mean moved by {result.effect_size:.2f}"
        }
    finally:
        del suite.strata[("site", "lsdd-test")]

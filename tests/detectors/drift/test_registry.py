"""The registry is the one list fitting and loading read (issue 14: adding a detector = one
file + one registry line + its tests): a detector kind added to `WINDOWED` alone is fitted on
every stratum, stored and loaded back scoring the same; without that line its stored kind is
refused. Seeded samples from test_artifact (500 reference events, windows of 150).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Self

import numpy as np
import pytest
from test_artifact import ATTRS, CONFIG, sample

from detectors.drift import artifact, registry
from detectors.drift.contract import ALL, Sample
from detectors.drift.fitting import fit_suite
from detectors.drift.results import DriftResult, Status
from detectors.drift.suite import SuiteConfig


class MeanGap:
    """A new windowed kind (a stand-in for, say, LSDD): the gap between embedding means."""

    kind = "MeanGap"

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self.name = f"gap:{signal}"

    @classmethod
    def candidates(
        cls, part: Sample, config: SuiteConfig, attributes: tuple[str, ...], whole: bool
    ) -> list[Self]:
        return [cls(s) for s in sorted(part.vectors)]

    def fit(self, reference: Sample) -> Self:
        self.mean = reference.vectors[self.signal].mean(0)
        return self

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"signal": self.signal}, {"mean": self.mean}

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        self = cls(params["signal"])
        self.mean = arrays["mean"]
        return self

    def score(self, window: Sample, *, seed: int = 0) -> DriftResult:
        gap = float(np.linalg.norm(window.vectors[self.signal].mean(0) - self.mean))
        return DriftResult(detector=self.name, signal=self.signal, status=Status.OK,
                           p_value=float(np.exp(-gap * len(window))), statistic=gap,
                           n_window=len(window))  # fmt: skip

    def indicator(self, window: Sample, result: DriftResult) -> np.ndarray | None:
        return np.linalg.norm(window.vectors[self.signal] - self.mean, axis=1)

    def summary(self, result: DriftResult) -> str | None:
        return f"mean moved by {result.statistic:.2f}"


def test_registered_kinds_have_distinct_names_and_fit_in_the_listed_order():
    kinds = [cls.kind for cls in registry.WINDOWED]
    assert len(set(kinds)) == len(kinds)
    assert all(registry.windowed(k) is cls for k, cls in zip(kinds, registry.WINDOWED, strict=True))
    assert registry.windowed("os.system") is None


def test_one_registry_line_makes_a_new_kind_fitted_stored_and_loaded(monkeypatch):
    config = replace(CONFIG, online=False)
    monkeypatch.setattr(registry, "WINDOWED", (*registry.WINDOWED, MeanGap))
    suite = fit_suite(sample(500, 1), config, categorical_attributes=ATTRS)
    for key, fitted in suite.strata.items():
        assert fitted.detectors[-1].name == "gap:model_embedding", key
    stored = artifact.pack(suite)
    back = artifact.unpack(*stored)
    assert isinstance(back.strata[ALL].detectors[-1], MeanGap)
    window = sample(150, 7, shift=1.0)
    assert back.score(window, seed=3) == suite.score(window, seed=3)
    monkeypatch.undo()
    with pytest.raises(artifact.ArtifactError, match="unknown detector kind 'MeanGap'"):
        artifact.unpack(*stored)

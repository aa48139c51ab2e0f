"""The windowed-detector contract: the sample every detector reads and what it must give back.

Between monitor/drift/windows.py (which turns stored events into a `Sample`) and every windowed
detector (one per module: mmd.py, ks.py, chi2.py; listed in registry.py). Contract (DESIGN.md
§10): `fit(reference)` once, `score(window) -> DriftResult` with no side effects, `update(x)`
only for online detectors; `to_state`/`from_state` store a fitted detector as data
(artifact.py). The suite that holds the fitted detectors per stratum is suite.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import numpy as np

from detectors.drift.results import DriftResult

ALL = ("all", "all")  # the whole-model stratum
# Sample.categories key of the model's call per score (score ≥ its threshold): "call:nodule".
CALL_PREFIX = "call:"
STRATUM_KINDS = ("site", "scanner", "view", "sex", "age_band")
N_ATYPICAL = 5  # studies named per result (the most atypical under the reference first)


@dataclass(frozen=True)
class Sample:
    """Events of a reference or window, column-wise. Missing numbers are NaN, categories None."""

    ids: tuple[str, ...]  # pseudonymised study ids (never a UID)
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)  # signal -> (n, d)
    scalars: Mapping[str, Mapping[str, np.ndarray]] = field(
        default_factory=dict
    )  # signal -> feature -> (n,)
    categories: Mapping[str, np.ndarray] = field(
        default_factory=dict
    )  # DICOM attribute -> (n,) object
    strata: Mapping[str, np.ndarray] = field(default_factory=dict)  # kind -> (n,) object

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, index: np.ndarray) -> Sample:
        """Rows by boolean mask or integer index (the stratum or sub-window view)."""
        idx = np.flatnonzero(index) if index.dtype == bool else np.asarray(index)
        return Sample(
            ids=tuple(self.ids[i] for i in idx),
            vectors={k: v[idx] for k, v in self.vectors.items()},
            scalars={s: {f: v[idx] for f, v in fs.items()} for s, fs in self.scalars.items()},
            categories={k: v[idx] for k, v in self.categories.items()},
            strata={k: v[idx] for k, v in self.strata.items()},
        )

    def stratum_mask(self, kind: str, value: str) -> np.ndarray:
        if (kind, value) == ALL:
            return np.ones(len(self), dtype=bool)
        column = self.strata.get(kind)
        if column is None:
            return np.zeros(len(self), dtype=bool)
        return np.array([v == value for v in column], dtype=bool)


class WindowDetector(Protocol):
    """What every windowed test gives the monitor; nothing outside detectors/ needs more.

    `indicator`: one number per study of `window` for the change-point search behind an
    alert's onset (monitor/drift/), taken from the finding `result` leads with (its top feature,
    or the whole signal); None when the detector has none. `summary`: a one-line
    human reading of a whole-signal result (e.g. "standardised MMD² 12.3"), or None when its
    per-feature findings already say what moved.

    `kind` names the class in a stored reference's manifest (registry.py); `to_state` gives
    JSON parameters and plain numpy arrays, and the class's `from_state(params, arrays)` builds
    the fitted detector back from them (artifact.py), so nothing fitted is ever pickled.
    """

    name: str
    signal: str

    @property
    def kind(self) -> str: ...

    def fit(self, reference: Sample) -> Self: ...

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...

    def score(self, window: Sample, *, seed: int = 0) -> DriftResult: ...

    def indicator(self, window: Sample, result: DriftResult) -> np.ndarray | None: ...

    def summary(self, result: DriftResult) -> str | None: ...

"""The detectors a suite is made of, listed in one place: fitting and artifact loading read
only this list.

Between the detector modules (one per file) and their two users: fitting.py asks each windowed
kind for its candidates on a stratum, in this order, and artifact.py maps a stored manifest's
`kind` back to its class here (a name looked up in this list, never a module path imported).
Adding a windowed detector = its module (a class that satisfies contract.WindowDetector and
`DetectorKind` below), one line in `WINDOWED`, and its tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from detectors.drift.alibi_backend import OnlineCVM
from detectors.drift.chi2 import CategoricalChi2
from detectors.drift.contract import Sample, WindowDetector
from detectors.drift.ks import ScalarKS
from detectors.drift.mmd import EmbeddingMMD
from detectors.drift.suite import SuiteConfig


class DetectorKind(Protocol):
    """What a registered class offers: its manifest name, the detectors to fit on a stratum
    (unfitted; one that cannot fit raises InsufficientDataError and is left out), and the
    fitted detector back from its stored state."""

    @property
    def kind(self) -> str: ...

    def candidates(
        self, part: Sample, config: SuiteConfig, attributes: tuple[str, ...], whole: bool
    ) -> Sequence[WindowDetector]: ...

    def from_state(
        self, params: dict[str, Any], arrays: dict[str, np.ndarray]
    ) -> WindowDetector: ...


# Windowed detectors, in the order they are fitted (and stored, and scored) per stratum.
WINDOWED: tuple[DetectorKind, ...] = (
    EmbeddingMMD,  # mmd.py: embeddings
    ScalarKS,  # ks.py: scores, image quality, numeric DICOM attributes
    CategoricalChi2,  # chi2.py: categorical DICOM attributes and the model's calls
)
# The online detector (one per suite, fed event by event): alibi_backend.py.
ONLINE = OnlineCVM


def windowed(kind: str) -> DetectorKind | None:
    """The registered class a manifest's `kind` names, or None (the loader refuses it)."""
    return next((cls for cls in WINDOWED if cls.kind == kind), None)

"""One exception family per package (DESIGN.md §10): every exception class defined anywhere in
detectors/ derives from `DetectorError`, and those that were `ValueError`s still are, so
callers' `except ValueError` clauses catch what they caught."""

from __future__ import annotations

import importlib
import pkgutil

import detectors
from detectors.errors import DetectorError, InsufficientDataError


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for info in pkgutil.walk_packages(detectors.__path__, "detectors."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__ == info.name):  # fmt: skip
                found[f"{info.name}.{name}"] = value
    return found


def test_every_detectors_exception_is_a_detector_error():
    classes = _exception_classes()
    assert {"detectors.embedding.contract.EmbeddingError", "detectors.drift.artifact.ArtifactError",
            "detectors.performance.realised.PerformanceError"} <= set(classes)  # fmt: skip
    assert [name for name, cls in classes.items() if not issubclass(cls, DetectorError)] == []
    assert issubclass(InsufficientDataError, DetectorError)


def test_errors_that_were_value_errors_still_are():
    classes = _exception_classes()
    for name in ("detectors.embedding.contract.EmbeddingError",
                 "detectors.embedding.image_features.ImageFeatureError",
                 "detectors.embedding.device.DeviceError",
                 "detectors.performance.realised.PerformanceError"):  # fmt: skip
        assert issubclass(classes[name], ValueError), name

"""Fitting a suite on a reference: every registered detector per stratum, then calibration.

Between a reference `Sample` (monitor/drift/reference.py builds it from stored events) and the
fitted `DetectorSuite` (suite.py) that is stored as data (artifact.py). Which detectors are
fitted is registry.py's list, in its order; a detector with too little data in a stratum is
left out of that stratum, and any other failure stops the fit with its cause.
"""

from __future__ import annotations

from detectors.drift import registry
from detectors.drift.alibi_backend import BACKEND_VERSION
from detectors.drift.contract import ALL, Sample, WindowDetector
from detectors.drift.suite import (
    Calibration,
    DetectorSuite,
    FittedStratum,
    SuiteConfig,
    calibrate,
    split_reference,
)
from detectors.errors import DetectorError, InsufficientDataError


def fit_suite(
    reference: Sample,
    config: SuiteConfig,
    *,
    categorical_attributes: tuple[str, ...],
) -> DetectorSuite:
    """Fit every detector on the reference's fit part, per stratum; calibrate on the hold-out."""
    if len(reference) < config.min_reference:
        raise InsufficientDataError(
            f"reference has {len(reference)} events < minimum {config.min_reference}"
        )
    suite = DetectorSuite(config, BACKEND_VERSION)
    fit_idx, hold_idx = split_reference(len(reference), config.holdout_share, config.seed)
    fit_part, holdout = reference.take(fit_idx), reference.take(hold_idx)
    suite.n_fit, suite.n_holdout = len(fit_part), len(holdout)
    for key in suite.stratum_values(fit_part):
        part = fit_part.take(fit_part.stratum_mask(*key))
        if len(part) < config.min_reference:
            continue
        detectors = _fit_detectors(part, config, categorical_attributes, key == ALL)
        if detectors:
            suite.strata[key] = FittedStratum(key[0], key[1], len(part), detectors)
    if ALL not in suite.strata:
        raise InsufficientDataError("no detector could be fitted on the reference")
    suite.calibration = (
        calibrate(suite, holdout, config) if len(holdout) else Calibration(0, 0, {}, {})
    )
    if config.online:
        embedding = next(iter(sorted(reference.vectors)), None)
        try:
            suite.online = registry.ONLINE(config, embedding).fit(reference)
        except InsufficientDataError:
            suite.online = None
    return suite


def _fit_detectors(
    part: Sample, config: SuiteConfig, attributes: tuple[str, ...], whole: bool
) -> list[WindowDetector]:
    """The registered windowed detectors fitted on one stratum's part of the reference."""
    candidates = [
        d for kind in registry.WINDOWED for d in kind.candidates(part, config, attributes, whole)
    ]
    fitted = []
    for detector in candidates:
        try:
            fitted.append(detector.fit(part))
        except InsufficientDataError:
            continue
        except (ValueError, RuntimeError) as exc:
            raise DetectorError(f"fitting {detector.name} failed: {exc}") from exc
    return fitted

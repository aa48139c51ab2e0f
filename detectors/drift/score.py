"""The unified drift score: one number per window and stratum from all standardised signals.

Between the per-test results and the alert text/metrics. In the spirit of CheXstray's
multi-modal concordance (Soin et al. 2022, arXiv:2202.02833): each test's evidence is
standardised against its behaviour on reference sub-windows (no shift), then the z-scores
are combined with weights, so DICOM, image, embedding and score signals become comparable.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from detectors.drift.results import DriftResult, Status

# Under no shift a continuous p-value is uniform, so -log10(p) has mean and sd 1/ln(10).
NULL_EVIDENCE = (1 / math.log(10), 1 / math.log(10))
P_FLOOR = 1e-12


@dataclass(frozen=True)
class NullMoments:
    """Mean and sd of a detector's evidence (-log10 p) on the reference sub-windows."""

    mean: float
    sd: float


def evidence(p_value: float) -> float:
    return -math.log10(max(p_value, P_FLOOR))


def standardise(p_value: float, null: NullMoments | None) -> float:
    mean, sd = (null.mean, null.sd) if null else NULL_EVIDENCE
    return (evidence(p_value) - mean) / max(sd, 0.1)


def unified_score(
    results: Iterable[DriftResult],
    nulls: Mapping[str, NullMoments],
    weights: Mapping[str, float] | None = None,
) -> float:
    """Weighted mean of standardised evidence over the tests that ran (NaN if none did).

    Raw (unadjusted) p-values are used: the score measures size of the departure, while
    the decision to alert uses the adjusted p-values.
    """
    total = weight_sum = 0.0
    for result in results:
        if result.status not in (Status.OK, Status.DRIFT) or not math.isfinite(result.p_value):
            continue
        w = (weights or {}).get(result.signal, 1.0)
        total += w * standardise(result.p_value, nulls.get(result.detector))
        weight_sum += w
    return total / weight_sum if weight_sum else math.nan

"""Onset estimation: when did the shift start, from a per-study indicator series.

Called by the detection scheduler when an alert opens: the events of the windows around the
first firing window are turned into one number each (a DICOM value's indicator, a score,
an embedding's atypicality) and the single most likely change point is returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChangePoint:
    index: int  # first index of the new regime
    statistic: float  # standardised CUSUM maximum: larger is more certain
    before_mean: float
    after_mean: float


def mean_shift(series: np.ndarray, min_segment: int = 5) -> ChangePoint | None:
    """Least-squares single change in mean (Hinkley 1970, Biometrika 57:1; CUSUM form).

    Maximises |S_k - k/n S_n| / sqrt(k (n-k) / n) over k: the likelihood-ratio statistic of
    one mean shift in Gaussian noise. Returns None when the series is too short.
    """
    x = np.asarray(series, dtype=float)
    x = x[np.isfinite(x)] if not np.all(np.isfinite(x)) else x
    n = x.size
    if n < 2 * min_segment:
        return None
    csum = np.cumsum(x)
    k = np.arange(1, n)
    dev = csum[:-1] - k / n * csum[-1]
    scale = np.sqrt(k * (n - k) / n)
    stat = np.abs(dev) / scale
    stat[: min_segment - 1] = -np.inf
    stat[n - min_segment :] = -np.inf
    best = int(np.argmax(stat))
    sd = float(np.std(x)) or 1.0
    return ChangePoint(
        index=best + 1,
        statistic=float(stat[best] / sd),
        before_mean=float(x[: best + 1].mean()),
        after_mean=float(x[best + 1 :].mean()),
    )

"""Multiple-testing corrections for the many p-values of one window.

Between the detectors' raw p-values and the alert policy: every test of a window (all
signals, features and strata) forms one family; raw and adjusted p-values are both kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METHODS = ("bh", "bonferroni", "none")


def _weighted(p_values: Sequence[float], weights: Sequence[float] | None) -> np.ndarray:
    """p / w with the finite entries' weights rescaled to mean 1 (w = 1 when none are given).

    Weighted procedures (Genovese, Roeder & Wasserman 2006, Biometrika 93:509) keep their
    error control when the weights average one: a test given weight 4 is held to a threshold
    four times looser, paid for by the tests given less.
    """
    p = np.asarray(p_values, dtype=float)
    if weights is None:
        return p
    w = np.asarray(weights, dtype=float)
    if w.shape != p.shape or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ValueError("weights must be positive, finite and one per p-value")
    ok = np.isfinite(p)
    if ok.any():
        w = w / w[ok].mean()
    return p / w


def benjamini_hochberg(
    p_values: Sequence[float], weights: Sequence[float] | None = None
) -> list[float]:
    """BH step-up adjusted p-values (Benjamini & Hochberg 1995, JRSS-B 57:289).

    adj_(i) = min_{j >= i} min(1, m p_(j) / j). NaN inputs stay NaN and are not counted in m.
    With `weights`, the weighted BH of Genovese et al. (2006): the same on p / w.
    """
    p = _weighted(p_values, weights)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    m = int(ok.sum())
    if m == 0:
        return out.tolist()
    vals = p[ok]
    order = np.argsort(vals)
    ranked = vals[order] * m / np.arange(1, m + 1)
    # Step-up: cumulative minimum from the largest p-value down.
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.clip(ranked, 0.0, 1.0)
    out[ok] = adj
    return out.tolist()


def bonferroni(p_values: Sequence[float], weights: Sequence[float] | None = None) -> list[float]:
    """Bonferroni: adj = min(1, m p / w); controls the family-wise error under any dependence."""
    p = _weighted(p_values, weights)
    m = int(np.isfinite(p).sum())
    return [math.nan if not math.isfinite(x) else min(1.0, x * m) for x in p.tolist()]


def adjust(
    p_values: Sequence[float], method: str = "bh", weights: Sequence[float] | None = None
) -> list[float]:
    if method == "bh":
        return benjamini_hochberg(p_values, weights)
    if method == "bonferroni":
        return bonferroni(p_values, weights)
    if method == "none":
        return [float(x) for x in p_values]
    raise ValueError(f"unknown multiple-testing method {method!r}; expected one of {METHODS}")

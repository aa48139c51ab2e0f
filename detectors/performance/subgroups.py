"""Subgroup gaps: each metric by subgroup with intervals, flagged when a subgroup is worse.

Pure computation beside detectors/performance/realised.py: labels, scores and one subgroup value per
study in (site, scanner, sex, age band), a frozen `SubgroupTable` out. A subgroup is flagged
when a one-sided test says it is worse than all other studies pooled, at a family-wise
level (Bonferroni over subgroups × metrics), so a table of many strata does not cry wolf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from detectors.performance.degradation import _variance
from detectors.performance.realised import (
    Estimate,
    MinimumCounts,
    PerformanceError,
    PerformanceResult,
    evaluate,
    normal_sf,
)

DEFAULT_METRICS = ("auroc", "sensitivity", "specificity")


@dataclass(frozen=True)
class SubgroupRow:
    kind: str
    value: str
    metric: str
    n: int
    n_positive: int
    estimate: Estimate
    rest: Estimate  # the same metric on every other study
    p_value: float | None  # one-sided: subgroup worse than the rest
    worse: bool


@dataclass(frozen=True)
class SubgroupTable:
    kind: str
    finding: str
    alpha: float
    rows: tuple[SubgroupRow, ...]

    def flagged(self) -> tuple[SubgroupRow, ...]:
        return tuple(r for r in self.rows if r.worse)


def subgroup_table(
    labels: ArrayLike,
    scores: ArrayLike,
    groups: ArrayLike,
    threshold: float,
    *,
    kind: str,
    finding: str = "finding",
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    alpha: float = 0.05,
    confidence: float = 0.95,
    minimum: MinimumCounts | None = None,
) -> SubgroupTable:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=float)
    g = np.asarray(groups, dtype=object)
    if g.shape != y.shape:
        raise PerformanceError("one subgroup value per study is needed")
    values = sorted({str(v) for v in g})
    g = g.astype(str)
    pending: list[tuple[str, str, PerformanceResult, Estimate, Estimate, float | None]] = []
    for value in values:
        inside = g == value
        sub = evaluate(y[inside], s[inside], threshold, finding=finding, confidence=confidence,
                       minimum=minimum)  # fmt: skip
        rest = evaluate(y[~inside], s[~inside], threshold, finding=finding,
                        confidence=confidence, minimum=minimum)  # fmt: skip
        for metric in metrics:
            est, other = sub.metrics()[metric], rest.metrics()[metric]
            z = None
            if est.shown and other.shown:  # each metric gated by its own denominator
                v1, v2 = _variance(sub, metric), _variance(rest, metric)
                if v1 is not None and v2 is not None:
                    assert est.value is not None and other.value is not None
                    z = (other.value - est.value) / math.sqrt(max(v1 + v2, 1e-12))
            pending.append((value, metric, sub, est, other, z))
    tested = sum(1 for *_, z in pending if z is not None)
    level = alpha / max(tested, 1)
    rows = []
    for value, metric, sub, est, other, z in pending:
        p = float(normal_sf(z)) if z is not None else None
        rows.append(SubgroupRow(kind, value, metric, sub.n, sub.n_positive, est, other, p,
                                p is not None and p < level))  # fmt: skip
    return SubgroupTable(kind, finding, alpha, tuple(rows))

"""The monitoring plan's metric stop rules on the performance watch's windows (pure).

Between the evaluation (monitor/performance/evaluation.py: realised performance per window,
stratum and finding) and the lifecycle feed (monitor/performance/observe.py `observe_floors`):
a stop rule such as "specificity below 0.80 with 95% confidence" holds in a completed window
when the one-sided upper confidence bound of the whole model's realised metric is below the
floor — the Wilson bound (Wilson 1927) on the label-negative (specificity) or label-positive
(sensitivity) studies, as the realised metrics' intervals are computed (detectors/performance/
realised.py). A window whose labels are too few for the metric decides nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from detectors.performance.realised import wilson_interval
from monitor.performance.evaluation import ALL, ModelReport
from monitor.plan.document import StopRule

SIGNAL = "performance_floor"


@dataclass(frozen=True)
class FloorDecision:
    rule: str
    index: int  # the window's index
    end: datetime
    holds: bool
    details: dict[str, Any]


def upper_bound(value: float, n: int, confidence: float) -> float:
    """One-sided upper bound at `confidence` of a proportion observed as `value` over `n`."""
    successes = int(round(value * n))
    return wilson_interval(successes, n, 2 * confidence - 1)[1]


def decisions(report: ModelReport, rules: Sequence[StopRule]) -> list[FloorDecision]:
    """Per completed window and metric stop rule: does the rule hold (any finding)?"""
    out = []
    for wr in report.windows:
        if not wr.window.complete:
            continue
        for rule in rules:
            if rule.metric is None or rule.below is None:
                continue
            worst: dict[str, Any] | None = None
            for cell in wr.cells:
                if cell.stratum != ALL:
                    continue
                r = cell.realised
                est = r.metrics()[rule.metric]
                n = r.n_negative if rule.metric == "specificity" else r.n_positive
                if est.value is None or n <= 0:
                    continue
                upper = upper_bound(est.value, n, rule.confidence)
                if worst is None or upper < worst["upper"]:
                    worst = {"finding": cell.finding, "value": est.value, "upper": upper,
                             "n": n}  # fmt: skip
            if worst is None:
                continue
            holds = worst["upper"] < rule.below
            group = "label-negative" if rule.metric == "specificity" else "label-positive"
            summary = (f"{rule.metric} {worst['value']:.2f} ({rule.confidence:.0%} upper bound "
                       f"{worst['upper']:.2f}) {'below' if holds else 'not below'} the plan's "
                       f"floor {rule.below:.2f} over {worst['n']} {group} studies "
                       f"({worst['finding']})")  # fmt: skip
            details = {"method": "stop_rule", "stop_rule": rule.id, "metric": rule.metric,
                       "below": rule.below, "confidence": rule.confidence, **worst,
                       "summary": summary, "window_kind": wr.window.kind,
                       "window_index": wr.window.index,
                       "window_start": wr.window.start.isoformat(),
                       "window_end": wr.window.end.isoformat()}  # fmt: skip
            out.append(FloorDecision(rule.id, wr.window.index, wr.window.end, holds, details))
    return out

"""Metric families with bounded labels: what the scrape-time collector yields.

Between the sections of monitor/metrics/scrape.py (which read PostgreSQL) and
prometheus_client: each section fills `Family` (counter or gauge) and `Histogram` rows, and
these keep every label value bounded (monitor.metrics.names.bounded_label and a per-label
budget), so a stream of odd events can neither leak into /metrics nor grow the series.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from monitor.metrics import names
from monitor.metrics.names import OTHER, bounded_label, incident_label, stratum_kind
from monitor.store import counters

# Label names whose values are not free text: a stratum kind from the allow-list, an id.
_LABEL_RULES: dict[str, Callable[[object], str]] = {
    "stratum_kind": stratum_kind,
    "root_cause_kind": stratum_kind,
    "incident": incident_label,
}


@dataclass
class Family:
    """One metric family whose label values are bounded and whose label sets are unique.

    Values collapse to "other" past `MAX_VALUES_PER_LABEL` distinct values of a label, and
    label sets that collapse together are combined (sum for counters, max for gauges), so
    the exposition never holds a duplicate series.
    """

    name: str
    doc: str
    labels: Sequence[str]
    counter: bool = False
    summed: bool = False  # combine collapsed label sets by sum (always for counters)
    rows: dict[tuple[str, ...], float] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)

    def add(self, values: Sequence[object], value: float | None) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        key = tuple(self._bound(name, v) for name, v in zip(self.labels, values, strict=True))
        old = self.rows.get(key)
        if old is None:
            self.rows[key] = float(value)
        else:
            summed = self.counter or self.summed
            self.rows[key] = old + float(value) if summed else max(old, float(value))

    def _bound(self, name: str, value: object) -> str:
        text = _LABEL_RULES.get(name, bounded_label)(value)
        seen = self.seen.setdefault(name, set())
        if text not in seen and len(seen) >= names.MAX_VALUES_PER_LABEL:
            return OTHER
        seen.add(text)
        return text

    def metric(self) -> Metric:
        family: Metric
        if self.counter:
            family = CounterMetricFamily(self.name, self.doc, labels=list(self.labels))
        else:
            family = GaugeMetricFamily(self.name, self.doc, labels=list(self.labels))
        for key, value in sorted(self.rows.items()):
            family.add_metric(list(key), value)
        return family


@dataclass
class Histogram:
    """A histogram family (Prometheus classic: cumulative `le` buckets, `_count`, `_sum`)
    with the same label bounding as Family; label sets that collapse together are summed."""

    name: str
    doc: str
    labels: Sequence[str]
    rows: dict[tuple[str, ...], tuple[tuple[float, ...], list[float], float, float]] = field(
        default_factory=dict
    )
    _bounder: Family = field(init=False)

    def __post_init__(self) -> None:
        self._bounder = Family(self.name, self.doc, self.labels)

    def add(self, values: Sequence[object], h: counters.Histogram) -> None:
        key = tuple(self._bounder._bound(n, v) for n, v in zip(self.labels, values, strict=True))
        old = self.rows.get(key)
        if old is None or old[0] != h.bounds:
            self.rows[key] = (h.bounds, [float(c) for c in h.cumulative], float(h.count), h.sum)
        else:
            cumulative = [a + b for a, b in zip(old[1], h.cumulative, strict=True)]
            self.rows[key] = (h.bounds, cumulative, old[2] + h.count, old[3] + h.sum)

    def metric(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.doc, labels=list(self.labels))
        for key, (bounds, cumulative, count, total) in sorted(self.rows.items()):
            buckets = [(floatToGoString(b), c) for b, c in zip(bounds, cumulative, strict=True)]
            family.add_metric(list(key), [*buckets, ("+Inf", count)], total)
        return family

"""Sequential performance channel: Bernoulli CUSUMs over the labelled stream, per span decisions.

Pure computation beside the windowed evaluation (monitor/performance/evaluation.py), between the
joined studies watch.py loads and the alert lifecycle it feeds: per finding, three charts
(detectors/performance/cusum.py) are designed on the frozen reference's labelled studies and
read the monitored studies in label-arrival order; `decisions` says, per performance window's
span of label time, whether a chart alarmed there. Recomputed from stored data every pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.drift.results import Status
from detectors.performance import cusum
from detectors.performance.realised import PerformanceError
from monitor.performance.evaluation import (
    ModelReport,
    PerformanceConfig,
    PerformanceWatchError,
    Study,
    Window,
    binary_label,
)

SIGNAL = "performance_cusum"
WINDOW_KIND = "cusum"
# Chart name → the per-study stream detectors/performance/cusum.py `indicators` gives for it.
METRICS: Mapping[str, str] = {"discrepancy": "discrepancy", "false_negative": "sensitivity",
                              "false_positive": "specificity"}  # fmt: skip
_READING = {"discrepancy": ("discrepancy rate", "labelled studies"),
            "false_negative": ("miss rate among label-positive studies", "label-positive studies"),
            "false_positive": ("false-call rate among label-negative studies",
                               "label-negative studies")}  # fmt: skip
MIN_INDICATORS = 30  # reference indicators below which a chart's p0 is not estimated
GUARD_CONFIDENCE = 0.9  # design at the 90% upper bound of the estimated p0 (cusum.upper_rate)
BLOCK = 4096  # indicators per cusum.update call: an alarm rescans at most its block
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class ChartDesign:
    """One chart's design from the reference, or why it has none (status not ok)."""

    finding: str
    metric: str  # discrepancy | false_negative | false_positive
    status: Status
    reason: str | None
    n_reference: int  # the chart's indicators in the reference
    share: float  # n_reference over the reference's labelled studies
    p0: float  # the rate estimated on the reference
    guard: float | None = None  # its upper confidence bound, at which ARL0 is kept
    arl0: float | None = None  # this chart's share of the channel's ARL0, in its indicators
    design: cusum.BernoulliCusumDesign | None = None

    @property
    def name(self) -> str:
        return f"{self.finding}:{self.metric}"

    def as_dict(self) -> dict[str, Any]:
        d = self.design
        return {"finding": self.finding, "metric": self.metric, "status": self.status.value,
                "reason": self.reason, "n_reference": self.n_reference,
                "share": round(self.share, 6), "p0": self.p0, "p0_guard": self.guard,
                "arl0": self.arl0, "design": d.to_state() if d else None}  # fmt: skip


@dataclass(frozen=True)
class CusumAlarm:
    """One crossing of a chart's limit (the chart then restarts from 0)."""

    index: int  # 0-based among the chart's indicators
    at: datetime  # label time of the study whose indicator crossed
    statistic: int  # the chart's statistic there, integer units (limit: design.limit)
    since_reset: int  # indicators read since the statistic was last 0
    onset: datetime  # label time at which the statistic was last 0: the change-point estimate
    onset_occurred_at: datetime  # acquisition time of the first study read after that reset


@dataclass(frozen=True)
class Chart:
    """A designed chart run over the monitored label stream."""

    design: ChartDesign
    alarms: tuple[CusumAlarm, ...]
    n: int  # indicators read
    # Label times (µs since the epoch) of its indicators, in stream order: spans are cut on it.
    label_us: np.ndarray = field(compare=False, repr=False)

    @property
    def alarm_index(self) -> np.ndarray:
        return np.array([a.index for a in self.alarms], np.int64)


@dataclass(frozen=True)
class SequentialReport:
    arl0: float  # the channel's ARL0, labelled studies
    ratio: float
    designs: tuple[ChartDesign, ...]  # every chart, designed or not
    charts: tuple[Chart, ...]  # the designed ones, run
    watermark: datetime | None  # the latest label time seen: spans ending before it are closed

    def as_dict(self) -> dict[str, Any]:
        return {"method": "cusum", "arl0": self.arl0, "ratio": self.ratio,
                "charts": [d.as_dict() for d in self.designs]}  # fmt: skip


@dataclass(frozen=True)
class SpanDecision:
    index: int
    start: datetime
    end: datetime
    firing: bool
    details: dict[str, Any]
    onset: datetime | None  # the first alarm's change-point estimate, when firing


# --- the label stream ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LabelStream:
    """One finding's labelled studies in label-arrival order (label time, then study)."""

    finding: str
    studies: tuple[Study, ...]
    labels: np.ndarray
    calls: np.ndarray
    label_us: np.ndarray  # label times, µs since the epoch


def label_stream(studies: Iterable[Study], finding: str) -> LabelStream:
    """The AI call (score ≥ the study's own threshold, as realised.evaluate) beside the read,
    ordered by label time: the order in which a radiologist's reads reach the monitor, which
    is what a sequential chart reads (not the order the studies were acquired)."""
    rows = []
    for s in studies:
        y = binary_label(s.labels, finding)
        if y is None or s.label_at is None or finding not in s.scores:
            continue
        call = int(s.scores[finding] >= s.thresholds.get(finding, 0.5))
        rows.append((_us(s.label_at), s.study, s.event_id, y, call, s))
    rows.sort(key=lambda r: r[:3])
    f = np.array
    return LabelStream(finding, tuple(r[5] for r in rows), f([r[3] for r in rows], np.int8),
                       f([r[4] for r in rows], np.int8), f([r[0] for r in rows], np.int64))  # fmt: skip


def _positions(metric: str, stream: LabelStream) -> np.ndarray:
    """Stream positions of the chart's indicators (all, label-positive, label-negative)."""
    if metric == "discrepancy":
        return np.arange(stream.labels.size)
    return np.flatnonzero(stream.labels == (1 if metric == "false_negative" else 0))


# --- designs -------------------------------------------------------------------------------------


def chart_arl0(channel_arl0: float, charts: int, share: float) -> float:
    """One chart's ARL0, in its own indicators, so that the channel's charts together raise one
    false alarm per `channel_arl0` labelled studies: the false alarms are split equally over the
    charts (1/(charts·channel_arl0) per labelled study each), and a chart reads `share` of an
    indicator per labelled study, so ARL0_i = channel_arl0 · charts · share."""
    return channel_arl0 * charts * share


def p1_for(p0: float, ratio: float) -> float:
    """The stated shift: ratio·p0, capped halfway between p0 and 1 (a rate cannot exceed 1)."""
    return min(ratio * p0, (1 + p0) / 2)


def indifference_rate(p0: float, p1: float) -> float:
    """The rate at which the chart's log-likelihood-ratio increments have mean 0."""
    up, down = math.log(p1 / p0), math.log((1 - p0) / (1 - p1))
    return down / (up + down)


def design_charts(reference: Sequence[Study], findings: Sequence[str],
                  config: PerformanceConfig) -> tuple[ChartDesign, ...]:  # fmt: skip
    """Every (finding, metric) chart, designed from the reference's labelled studies."""
    if not config.cusum_ratio > 1 or not config.cusum_arl0 > 1:
        raise PerformanceWatchError(f"cusum_ratio and cusum_arl0 must exceed 1, got "
                                    f"{config.cusum_ratio}, {config.cusum_arl0}")  # fmt: skip
    labelled = sum(1 for s in reference if s.labels)
    drafts: list[ChartDesign] = []
    for finding in findings:
        stream = label_stream(reference, finding)
        for metric, kind in METRICS.items():
            x = cusum.indicators(kind, stream.labels, stream.calls)
            n, p0 = int(x.size), float(x.mean()) if x.size else 0.0
            share = n / labelled if labelled else 0.0
            drafts.append(_eligible(finding, metric, n, share, p0, config.cusum_ratio))
    # The channel's false alarms are split over the charts that can be designed.
    s = sum(1 for d in drafts if d.status == Status.OK)
    return tuple(_design(d, chart_arl0(config.cusum_arl0, s, d.share), config.cusum_ratio)
                 if d.status == Status.OK else d for d in drafts)  # fmt: skip


def _eligible(finding: str, metric: str, n: int, share: float, p0: float,
              ratio: float) -> ChartDesign:  # fmt: skip
    reason = None
    guard = cusum.upper_rate(p0, n, GUARD_CONFIDENCE) if n else None
    if n < MIN_INDICATORS:
        reason = f"{n} reference indicators (< {MIN_INDICATORS}): p0 not estimated"
    elif p0 == 0:
        # No event in the reference: a multiple of zero states no shift.
        reason = f"no {metric} among {n} reference studies: p0 = 0 states no shift"
    elif guard is not None and guard > (p0 + indifference_rate(p0, p1_for(p0, ratio))) / 2:
        # The chart's increments have mean 0 at the indifference rate; designed at a guard near
        # it, its limit (and ARL1) grows without bound and the exact design takes seconds.
        # Up to halfway there, ARL1 is at most ~1.9× the unguarded one (p0 0.01-0.5, ×2).
        reason = (
            f"reference too small: p0 {p0:.3g}, its upper bound {guard:.3g} is past halfway "
            f"to the rate {indifference_rate(p0, p1_for(p0, ratio)):.3g} the chart cannot "
            f"tell from p1"
        )
    status = Status.OK if reason is None else Status.INSUFFICIENT_DATA
    return ChartDesign(finding, metric, status, reason, n, share, p0, guard)


def _design(draft: ChartDesign, arl0: float, ratio: float) -> ChartDesign:
    try:
        design = cusum.design_bernoulli(draft.p0, p1_for(draft.p0, ratio), arl0,
                                        guard=draft.guard)  # fmt: skip
    except PerformanceError as exc:  # e.g. an ARL0 beyond the exact chain's size
        return ChartDesign(draft.finding, draft.metric, Status.ERROR, str(exc),
                           draft.n_reference, draft.share, draft.p0, draft.guard, arl0)  # fmt: skip
    return ChartDesign(draft.finding, draft.metric, Status.OK, None, draft.n_reference,
                       draft.share, draft.p0, draft.guard, arl0, design)  # fmt: skip


# --- running -------------------------------------------------------------------------------------


def run_chart(design: ChartDesign, stream: LabelStream) -> Chart:
    """The chart from its start over the stream: each alarm, its statistic and its onset."""
    assert design.design is not None
    d = design.design
    at = _positions(design.metric, stream)
    x = cusum.indicators(METRICS[design.metric], stream.labels, stream.calls)
    hits: list[int] = []
    state = cusum.CusumState()
    for start in range(0, x.size, BLOCK):  # blocks: a restart rescans only its block
        step = cusum.update(d, state, x[start : start + BLOCK])
        hits += [start + i for i in step.alarms]
        state = step.state
    steps = np.where(x.astype(bool), d.up, -d.down).astype(np.int64)
    alarms, seg = [], 0
    for hit in hits:
        # Page's statistic from the restart (Page's recursion in closed form, as cusum.update
        # reads it): where it was last 0 before the crossing is the CUSUM's change point.
        c = np.cumsum(steps[seg : hit + 1])
        stat = c - np.minimum(np.minimum.accumulate(c), 0)
        zeros = np.flatnonzero(stat[:-1] == 0)
        last_zero = seg + int(zeros[-1]) if zeros.size else seg - 1
        reset = stream.studies[at[max(last_zero, 0)]]  # at the chart's start: its first study
        alarms.append(CusumAlarm(hit, _label_at(stream.studies[at[hit]]), int(stat[-1]),
                                 hit - last_zero, _label_at(reset),
                                 stream.studies[at[last_zero + 1]].occurred_at))  # fmt: skip
        seg = hit + 1
    return Chart(design, tuple(alarms), int(x.size), stream.label_us[at])


def _label_at(study: Study) -> datetime:
    assert study.label_at is not None  # label_stream keeps labelled studies only
    return study.label_at


def _us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def evaluate(report: ModelReport, config: PerformanceConfig) -> SequentialReport:
    """Design on `report.reference` (the windowed test's reference), run over every monitored
    study (all windows, the open one too) in label-arrival order."""
    ref = report.reference.window.studies
    designs = design_charts(ref, report.findings, config)
    monitored = [s for w in report.windows for s in w.window.studies]
    streams = {f: label_stream(monitored, f) for f in report.findings}
    charts = tuple(run_chart(d, streams[d.finding]) for d in designs if d.design is not None)
    times = [s.label_at for s in (*ref, *monitored) if s.label_at is not None and s.labels]
    return SequentialReport(config.cusum_arl0, config.cusum_ratio, designs, charts,
                            max(times) if times else None)  # fmt: skip


# --- decisions -----------------------------------------------------------------------------------


def decisions(seq: SequentialReport, windows: Sequence[Window]) -> list[SpanDecision]:
    """Per complete performance window, the span of label time up to its end (from the previous
    window's end; the first from the stream's start): fires when a chart alarmed in it.

    A span is decided once the label stream has passed its end (a later label time was seen),
    so labels arriving in label-time order cannot change it; a span without any indicator is
    insufficient data (neither fires nor resolves). The lifecycle is fed at the cadence of the
    windowed test, so its hysteresis counts performance windows for both channels."""
    out: list[SpanDecision] = []
    ends = [w for w in windows if w.complete]
    at = {chart.design.name: chart.alarm_index for chart in seq.charts}
    for k, w in enumerate(ends):
        if seq.watermark is None or seq.watermark <= w.end:
            break
        lo = ends[k - 1].end if k else None
        start = lo or w.start
        per_chart: dict[str, dict[str, int]] = {}
        alarms: list[tuple[CusumAlarm, ChartDesign]] = []
        for chart in seq.charts:
            a = 0 if lo is None else int(np.searchsorted(chart.label_us, _us(lo), "right"))
            b = int(np.searchsorted(chart.label_us, _us(w.end), "right"))
            first, stop = np.searchsorted(at[chart.design.name], [a, b])  # a ≤ index < b
            inside = chart.alarms[first:stop]
            per_chart[chart.design.name] = {"indicators_in_span": b - a, "indicators": b,
                                            "alarms_in_span": len(inside)}  # fmt: skip
            alarms += [(al, chart.design) for al in inside]
        if not any(c["indicators_in_span"] for c in per_chart.values()):
            continue
        alarms.sort(key=lambda t: (t[0].at, t[1].name))
        read = [alarm_details(chart, al, seq.ratio) for al, chart in alarms]
        details: dict[str, Any] = {
            "window_kind": WINDOW_KIND, "window_index": w.index,
            "window_start": start.isoformat(), "window_end": w.end.isoformat(),
            "method": "cusum", "arl0_channel": seq.arl0, "charts": per_chart, "alarms": read,
            **(read[0] if read else {}),  # the first alarm leads the alert
        }  # fmt: skip
        out.append(SpanDecision(w.index, start, w.end, bool(alarms), details,
                                alarms[0][0].onset if alarms else None))  # fmt: skip
    return out


def alarm_details(chart: ChartDesign, alarm: CusumAlarm, ratio: float) -> dict[str, Any]:
    """What an alert says of one alarm: the design it crossed and its one-line reading."""
    d = chart.design
    assert d is not None
    rate, unit = _READING[chart.metric]
    shift = "doubled" if ratio == 2 else f"×{ratio:g}"
    summary = (
        f"{chart.finding} {rate} {d.p0:.2g} → {d.p1:.2g} expected; CUSUM crossed its "
        f"limit {alarm.since_reset} {unit} after its last reset "
        f"(ARL1 ≈ {d.arl1_steady:.0f} at the {shift} rate)"
    )
    return {"method": "cusum", "finding": chart.finding, "metric": chart.metric,
            "p0": d.p0, "p0_guard": chart.guard, "p1": d.p1, "arl0_target": d.arl0_target,
            "arl0_achieved": d.arl0_achieved, "arl1": d.arl1, "arl1_steady": d.arl1_steady,
            "limit": d.limit, "h": d.h, "alarm_at": alarm.at.isoformat(),
            "statistic": alarm.statistic, "statistic_llr": alarm.statistic * d.h / d.limit,
            "indicators": alarm.index + 1, "since_reset": alarm.since_reset,
            "onset": alarm.onset.isoformat(),
            "onset_occurred_at": alarm.onset_occurred_at.isoformat(),
            "summary": summary}  # fmt: skip

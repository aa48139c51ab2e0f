"""The model report's figures, all on one event-time axis: drift evidence, output, performance.

Between the report's data (monitor/reports/model_report.py `ReportData`) and its HTML: matplotlib
figures as inline SVG (monitor/reports/html_parts.py). Every figure's x axis is the report's
period in event time (`occurred_at`, never the wall clock of detection, so a replay or backfill
fills the axis), the reference period is shaded green, thresholds are drawn (drift: adjusted
p = α on a −log10 scale, the level alerts open at; performance: the reference value), and
incident onsets are marked. Drift evidence is −log10 of the smallest Benjamini–Hochberg adjusted
p per signal in a window: above the α line the window fired for that signal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd

from monitor.reports.html_parts import TimeExtent, pyplot, svg_figure, table
from monitor.reports.model_report import ReportData

EVIDENCE_CAP = 30.0  # −log10 p beyond this is drawn at the cap (p < 1e-30 reads the same)
OUTPUT_BINS = 60  # points of the model-output curve over the period
MAX_STRATA = 6  # small multiples shown (the strata with alerts, most alerts first)
PERFORMANCE_METRICS = (("auroc", "AUROC"), ("sensitivity", "Sensitivity"),
                       ("specificity", "Specificity"))  # fmt: skip
SIGNAL_COLOURS = {"acquisition": "#b45309", "image_quality": "#7c3aed", "image_embedding":
                  "#0e7490", "model_embedding": "#1d4ed8", "scores": "#c53030", "online":
                  "#52606d"}  # fmt: skip
REFERENCE_COLOUR = "#2f855a"
REFERENCE_STRIP = 0.08  # the share of the default axis showing the reference's last stretch


def axis(data: ReportData) -> tuple[datetime, datetime]:
    """The time axis: the period as asked; else the monitored period after the reference with
    the reference's last stretch before it (REFERENCE_STRIP of the axis, shaded), so the
    windows, which exist only after the reference, fill the axis and the baseline still shows."""
    lo, hi = data.period
    ref = data.reference_span
    if data.start is not None or ref is None or ref[1] >= hi:
        return lo, hi
    strip = (hi - ref[1]) * REFERENCE_STRIP / (1 - REFERENCE_STRIP)
    return max(lo, ref[1] - strip), hi


def _evidence(p: pd.Series) -> np.ndarray:
    values = -np.log10(np.clip(p.astype(float).to_numpy(), 1e-300, 1.0))
    return np.minimum(values, EVIDENCE_CAP)


def _decorate(ax: Any, data: ReportData, onsets: Sequence[tuple[datetime, str]]) -> None:
    lo, hi = axis(data)
    ref = data.reference_span
    if ref is not None and ref[1] >= lo and ref[0] <= hi:
        ax.axvspan(max(ref[0], lo), min(ref[1], hi), color=REFERENCE_COLOUR, alpha=0.13, lw=0)
    for when, label in onsets:
        if lo <= when <= hi:
            ax.axvline(when, color="#c53030", ls="--", lw=1.2)
            ax.annotate(label, (when, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -10),
                        textcoords="offset points", color="#c53030", fontsize=8)  # fmt: skip
    if ref is not None and ref[1] >= lo and ref[0] <= hi:
        ax.annotate("reference", (max(ref[0], lo), 0.0), xycoords=("data", "axes fraction"),
                    xytext=(3, 3), textcoords="offset points", color=REFERENCE_COLOUR,
                    fontsize=8)  # fmt: skip
    ax.set_xlim(lo, hi)
    ax.grid(alpha=0.25)
    locator = mdates.AutoDateLocator(maxticks=8)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _onsets(data: ReportData) -> list[tuple[datetime, str]]:
    """Incident onsets (else alert onsets when no incident holds them), labelled by id."""
    out = [(i.onset, f"incident #{i.id} onset") for i in data.incidents if i.onset]
    out += [(data.span(a)[0], f"alert #{a.id}") for a in data.loose_alerts]
    return out


class _Extent:
    """Collects the x values a figure plots, for its TimeExtent."""

    def __init__(self) -> None:
        self.times: list[datetime] = []

    def add(self, values: Any) -> None:
        self.times += [pd.Timestamp(v).to_pydatetime() for v in values]

    def of(self, data: ReportData) -> TimeExtent | None:
        if not self.times:
            return None
        lo, hi = axis(data)
        return TimeExtent(lo, hi, min(self.times), max(self.times))


def timeline(data: ReportData) -> str:
    """Whole-model drift evidence per signal with the α line; the model's output over the
    whole period (reference included): mean score, positive rate, labelled prevalence."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5.6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})  # fmt: skip
    extent = _Extent()
    whole = data.drift[(data.drift["stratum_kind"] == "all")]
    threshold = -math.log10(data.drift_alpha)
    for signal, g in whole.groupby("signal"):
        extent.add(g["window_end"])
        top.plot(g["window_end"], _evidence(g["p_adjusted"]), marker="o", ms=3, lw=1.4,
                 color=SIGNAL_COLOURS.get(str(signal)), label=str(signal))  # fmt: skip
    top.axhline(threshold, color="black", lw=1, ls=":")
    top.annotate(f"alert threshold: adjusted p < α = {data.drift_alpha:g}", (1.0, threshold),
                 xycoords=("axes fraction", "data"), xytext=(-4, 3), textcoords="offset points",
                 fontsize=8, ha="right")  # fmt: skip
    top.set_ylabel(f"drift evidence\n−log10 adjusted p (≤ {EVIDENCE_CAP:g})")
    top.set_ylim(0, max(threshold * 2, float(_evidence(whole["p_adjusted"]).max()) * 1.08
                        if len(whole) else threshold * 2))  # fmt: skip
    if len(whole):
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                   title="signal (whole model)", title_fontsize=8)  # fmt: skip
    else:
        top.text(0.5, 0.5, "no drift windows in this period", transform=top.transAxes,
                 ha="center", color="#52606d")  # fmt: skip
    _decorate(top, data, _onsets(data))
    lo, hi = axis(data)
    shown = data.frame[(data.frame["occurred_at"] >= lo) & (data.frame["occurred_at"] <= hi)]
    if data.findings and len(shown):
        f = data.findings[0]
        bins = np.arange(len(shown)) * OUTPUT_BINS // max(len(shown), 1)
        g = shown.assign(pred=shown[f"score_{f}"] >= shown[f"threshold_{f}"]).groupby(bins)
        when = g["occurred_at"].max()
        extent.add([shown["occurred_at"].min(), shown["occurred_at"].max()])
        bottom.plot(when, g[f"score_{f}"].mean(), color="#1d4ed8", lw=1.3, label="mean score")
        bottom.plot(when, g["pred"].mean(), color="#c53030", lw=1.3,
                    label="positive calls\n(score ≥ operating point)")  # fmt: skip
        prevalence = g[f"label_{f}"].mean()
        bottom.plot(when, prevalence, color="#52606d", lw=1, ls="--",
                    label="positives among labelled")  # fmt: skip
        bottom.set_ylabel(f"{f}: output\nper {max(len(shown) // OUTPUT_BINS, 1)} studies")
        bottom.set_ylim(0, 1)
        bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    _decorate(bottom, data, [])
    caption = ("Event time (when studies were acquired). Green band: the reference period. "
               "Dashed red: onset of each incident. Above the dotted line a window's test was "
               "significant after correction.")  # fmt: skip
    return svg_figure(fig, figure_id="timeline", caption=caption, extent=extent.of(data))


def _moved(data: ReportData) -> list[tuple[str, str]]:
    """The strata that moved: those with alerts in the period, most alerts first."""
    count: dict[tuple[str, str], int] = {}
    for a in data.alerts:
        if a.stratum_kind != "all":
            key = (a.stratum_kind, a.stratum_value)
            count[key] = count.get(key, 0) + 1
    return sorted(count, key=lambda k: (-count[k], k))[:MAX_STRATA]


def strata(data: ReportData) -> str:
    """Small multiples: per stratum that moved, its drift evidence per signal (and its AUROC
    per window when performance alerted there), same axis and thresholds as the timeline."""
    moved = _moved(data)
    if not moved:
        return ""
    plt = pyplot()
    cols = min(3, len(moved))
    rows = math.ceil(len(moved) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.6 * rows), sharex=True, squeeze=False)
    extent = _Extent()
    threshold = -math.log10(data.drift_alpha)
    for ax, (kind, value) in zip(axes.flat, moved, strict=False):
        here = data.drift[(data.drift["stratum_kind"] == kind)
                          & (data.drift["stratum_value"] == value)]  # fmt: skip
        onsets = [(data.span(a)[0], f"#{a.id}") for a in data.alerts
                  if (a.stratum_kind, a.stratum_value) == (kind, value)]  # fmt: skip
        perf = data.performance[(data.performance["stratum_kind"] == kind)
                                & (data.performance["stratum_value"] == value)
                                & (data.performance["metric"] == "auroc")
                                & (data.performance["window_kind"] != "reference")]  # fmt: skip
        perf_alert = any(a.signal.startswith("performance") for a in data.alerts
                         if (a.stratum_kind, a.stratum_value) == (kind, value))  # fmt: skip
        if len(here):
            for signal, g in here.groupby("signal"):
                extent.add(g["window_end"])
                ax.plot(g["window_end"], _evidence(g["p_adjusted"]), marker="o", ms=2.5, lw=1.2,
                        color=SIGNAL_COLOURS.get(str(signal)), label=str(signal))  # fmt: skip
            ax.axhline(threshold, color="black", lw=1, ls=":")
            ax.set_ylabel("−log10 adj. p", fontsize=8)
            ax.legend(fontsize=7, loc="upper left")
        if perf_alert and perf["realised"].notna().any():
            twin = ax.twinx() if len(here) else ax
            _interval_series(twin, perf, "realised", "#111827", "AUROC realised", extent)
            twin.set_ylim(0, 1)
            twin.set_ylabel("AUROC", fontsize=8)
        ax.set_title(f"{kind} = {value}", fontsize=9, loc="left")
        _decorate(ax, data, onsets)
    for ax in list(axes.flat)[len(moved) :]:
        ax.set_visible(False)
    caption = ("The strata that moved (those with alerts in the period): drift evidence per "
               "signal against the same α line; AUROC per window with 95% intervals where "
               "performance alerted.")  # fmt: skip
    return "<h3>Strata that moved</h3>" + svg_figure(fig, figure_id="strata", caption=caption,
                                                      extent=extent.of(data))  # fmt: skip


def _interval_series(ax: Any, frame: pd.DataFrame, column: str, colour: str, label: str,
                     extent: _Extent, *, dashed: bool = False) -> None:  # fmt: skip
    rows = frame[frame[column].notna()].sort_values("window_end")
    if rows.empty:
        return
    x = rows["window_end"]  # as the drift windows: a window's result is known at its end
    extent.add(x)
    y = rows[column].astype(float).to_numpy()
    lower = rows[f"{column}_lower"].astype(float).fillna(rows[column]).to_numpy()
    upper = rows[f"{column}_upper"].astype(float).fillna(rows[column]).to_numpy()
    if dashed:
        ax.fill_between(x, lower, upper, color=colour, alpha=0.12, lw=0)
        ax.plot(x, y, ls="--", marker="s", ms=3, color=colour, label=label)
    else:
        # Clipped at 0: a logit or Wilson interval need not be centred on its estimate.
        ax.errorbar(x, y, yerr=[np.maximum(y - lower, 0), np.maximum(upper - y, 0)], fmt="-o", ms=3, lw=1.3, capsize=3,
                    color=colour, label=label)  # fmt: skip


def performance(data: ReportData) -> str:
    """Whole-model AUROC, sensitivity and specificity per window, realised (labels, 95%
    interval) beside estimated (label-free, CBPE), the reference's value and interval drawn
    across the axis; and the same numbers as a table."""
    perf = data.performance
    if not data.findings or perf.empty:
        return "<p class='muted' id='performance-none'>No performance results in this period.</p>"
    f = data.findings[0]
    whole = perf[(perf["stratum_kind"] == "all") & (perf["finding"] == f)]
    windows = whole[whole["window_kind"] != "reference"]
    if windows.empty:
        return "<p class='muted' id='performance-none'>No performance windows in this period.</p>"
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), sharex=True)
    extent = _Extent()
    lo, _ = axis(data)
    for ax, (metric, name) in zip(axes, PERFORMANCE_METRICS, strict=True):
        rows = windows[windows["metric"] == metric]
        ref = whole[(whole["window_kind"] == "reference") & (whole["metric"] == metric)]
        if len(ref) and pd.notna(ref["realised"].iloc[0]):
            r = ref.iloc[0]
            ax.axhline(float(r["realised"]), color=REFERENCE_COLOUR, lw=1.2, ls=":",
                       label=f"reference {float(r['realised']):.2f}")  # fmt: skip
            if pd.notna(r["realised_lower"]) and pd.notna(r["realised_upper"]):
                ax.axhspan(float(r["realised_lower"]), float(r["realised_upper"]),
                           color=REFERENCE_COLOUR, alpha=0.08, lw=0)  # fmt: skip
        if len(ref) and pd.notna(ref["realised"].iloc[0]) and lo <= ref["window_end"].iloc[0]:
            # The reference's own value, at its end: where the windows are compared from.
            _interval_series(ax, ref, "realised", REFERENCE_COLOUR, "reference window", extent)
        _interval_series(ax, rows, "realised", "#111827", "realised (labels)", extent)
        _interval_series(ax, rows, "estimated", "#1d4ed8", "estimated (no labels)", extent,
                         dashed=True)  # fmt: skip
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_ylim(0, 1.02)
        _decorate(ax, data, [(o, "") for o, _ in _onsets(data)])
        ax.legend(fontsize=7, loc="lower left")
    caption = (f"{f}, whole model, per window of studies (each point at its window's end): "
               "realised with 95% intervals (black), "
               "estimated without labels with its interval (blue, dashed), the reference "
               "value and interval (green).")  # fmt: skip
    return svg_figure(fig, figure_id="performance", caption=caption,
                      extent=extent.of(data)) + _performance_table(windows)  # fmt: skip


def _fmt(value: Any, lower: Any, upper: Any) -> str:
    if value is None or pd.isna(value):
        return "–"
    if lower is None or pd.isna(lower) or upper is None or pd.isna(upper):
        return f"{float(value):.2f}"
    return f"{float(value):.2f} [{float(lower):.2f}–{float(upper):.2f}]"


def _performance_table(windows: pd.DataFrame) -> str:
    rows = []
    for (start, end), g in windows.groupby(["window_start", "window_end"], sort=True):
        by = {m: g[g["metric"] == m].iloc[0] for m, _ in PERFORMANCE_METRICS
              if (g["metric"] == m).any()}  # fmt: skip
        cells = [f"{start:%Y-%m-%d %H:%M} – {end:%m-%d %H:%M}",
                 str(int(g["n_labelled"].max()))]  # fmt: skip
        for metric, _ in PERFORMANCE_METRICS:
            r = by.get(metric)
            cells += ["–", "–"] if r is None else [
                _fmt(r["realised"], r["realised_lower"], r["realised_upper"]),
                _fmt(r["estimated"], r["estimated_lower"], r["estimated_upper"])]  # fmt: skip
        rows.append(cells)
    headers = ["window (event time, UTC)", "labelled"]
    for _, name in PERFORMANCE_METRICS:
        headers += [f"{name} realised", f"{name} estimated"]
    return ("<details><summary>The numbers per window</summary>"
            + table(headers, rows, table_id="performance-windows") + "</details>")  # fmt: skip

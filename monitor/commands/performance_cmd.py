"""`radwatch performance [--model M] [--json]`: realised vs estimated performance, per window.

The command edge of monitor/performance/watch.py: runs the performance watch (label corrections,
evaluation, storage, alerts) and prints the label-free estimate beside the realised value,
with intervals, label coverage and latency, subgroup gaps and reliability warnings.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from monitor.commands.arguments import positive_float, positive_int
from monitor.config import Settings

if TYPE_CHECKING:  # the command registers on every `radwatch` start: keep imports light
    from detectors.performance.realised import Estimate
    from monitor.performance.watch import ModelReport, WindowReport

ALL = ("all", "all")  # monitor.performance.watch.ALL


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "performance",
        help="realised and label-free estimated performance, per window and subgroup",
        description="Example: radwatch performance --model cxr-nodule --window 500 --json",
    )
    parser.add_argument("--model", help="one model (default: every model with inferences)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--window", type=positive_int, default=500, help="inferences per window")
    parser.add_argument("--period", choices=("day", "week"), help="calendar windows instead")
    parser.add_argument("--reference-size", type=positive_int, default=1000,
                        help="the model's first N inferences form the reference")  # fmt: skip
    parser.add_argument("--alpha", type=positive_float, default=0.05,
                        help="per-window false-alarm rate of the degradation tests")  # fmt: skip
    parser.add_argument("--no-alerts", action="store_true",
                        help="evaluate and store, but do not feed the alert lifecycle")  # fmt: skip
    parser.set_defaults(handler=_performance)


def _performance(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.performance.watch import PerformanceConfig, PerformanceWatchError, run
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    if args.window < 10 or args.reference_size < 10:
        raise UsageError("--window and --reference-size must be at least 10")
    if not args.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    # It stores evaluations and feeds alerts, but only about data already collected: like
    # the read-only commands it starts nothing and migrates nothing.
    endpoints = resolve_endpoints(settings, read_only=True, broker=False)
    config = PerformanceConfig(window=args.window, period=args.period,
                               reference_size=args.reference_size, alpha=args.alpha)  # fmt: skip
    with db.connect(endpoints.database_url) as conn:
        try:
            reports = run(conn, model=args.model, config=config, alert=not args.no_alerts)
        except PerformanceWatchError as exc:
            raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps([report_dict(r) for r in reports], indent=2, default=str))
    else:
        for report in reports:
            print(format_report(report))
        if not reports:
            print("no model has enough inferences for a performance reference yet")
    return 0


# --- formatting --------------------------------------------------------------------------


def _est(e: Estimate, digits: int = 3) -> str:
    if e.value is None:
        return f"– (n={e.n})"
    if e.lower is None or e.upper is None:
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f} [{e.lower:.{digits}f}, {e.upper:.{digits}f}]"


def _window_line(wr: WindowReport, finding: str) -> str | None:
    cell = wr.cell(ALL, finding)
    if cell is None:
        return None
    w = wr.window
    rel = cell.estimated.reliability
    trust = "–" if rel is None else ("ok" if rel.reliable else "UNRELIABLE")
    verdict = {"drift": "DEGRADED", "ok": "ok", "insufficient_data": "too few labels"}.get(
        cell.degradation.status.value, cell.degradation.status.value
    )
    label = f"{w.index}" + ("" if w.complete else "*")
    return (f"{label:>4} {w.start:%Y-%m-%d %H:%M} {len(w.studies):>6} {wr.coverage:>6.0%}  "
            f"AUROC est {_est(cell.estimated.auroc):<22} real {_est(cell.realised.auroc):<22} "
            f"sens est {_est(cell.estimated.sensitivity, 2):<18} real "
            f"{_est(cell.realised.sensitivity, 2):<18} "
            f"spec est {_est(cell.estimated.specificity, 2):<18} real "
            f"{_est(cell.realised.specificity, 2):<18} estimate {trust:<10} {verdict}")  # fmt: skip


def format_report(report: ModelReport) -> str:
    lines = []
    ref = report.reference
    for finding in report.findings:
        rc = ref.cell(ALL, finding)
        ref_auc = _est(rc.realised.auroc) if rc else "–"
        lines.append(f"model {report.model} · finding {finding} · reference: first "
                     f"{len(ref.window.studies)} inferences, {rc.realised.n if rc else 0} "
                     f"labelled, AUROC {ref_auc}")  # fmt: skip
        lines.append("   # start             studies labelled  (estimated = label-free CBPE; "
                     "real = radiologist reads; * = window still filling)")  # fmt: skip
        for wr in report.windows:
            line = _window_line(wr, finding)
            if line:
                lines.append(line)
        latest = next((w for w in reversed(report.windows) if w.cell(ALL, finding)), None)
        if latest is not None:
            lines.append(f"     label latency (median / p90): "
                         f"{_hours(latest.latency_median_h)} / {_hours(latest.latency_p90_h)} "
                         f"in window {latest.window.index}")  # fmt: skip
        for wr in report.windows:
            for cell in wr.cells:
                rel = cell.estimated.reliability
                if cell.finding == finding and cell.stratum == ALL and rel and rel.reasons:
                    for reason in rel.reasons:
                        lines.append(f"     window {wr.window.index}: estimate: {reason}")
                if cell.finding == finding and cell.degradation.degraded:
                    worst = cell.degradation.worst()
                    assert worst is not None
                    lines.append(
                        f"     window {wr.window.index}: {cell.stratum[0]}={cell.stratum[1]}: "
                        f"{worst.metric} {worst.window:.3f} vs reference {worst.reference:.3f} "
                        f"(one-sided p={worst.p_value:.2g})")  # fmt: skip
            for table in wr.subgroups:
                for row in table.flagged() if table.finding == finding else ():
                    lines.append(
                        f"     window {wr.window.index}: subgroup gap: {row.kind}={row.value} "
                        f"{row.metric} {_est(row.estimate)} vs rest {_est(row.rest)} "
                        f"(p={row.p_value:.2g})")  # fmt: skip
    for change in report.alert_changes:
        lines.append(f"     ALERT {change.action}: performance alert #{change.alert_id} "
                     f"{change.model} {change.stratum_kind}={change.stratum_value} "
                     f"({change.state})")  # fmt: skip
    return "\n".join(lines)


def _hours(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} h"


def _cell_dict(cell: Any) -> dict[str, Any]:
    rel = cell.estimated.reliability
    return {
        "stratum": {"kind": cell.stratum[0], "value": cell.stratum[1]},
        "finding": cell.finding,
        "n_inferences": cell.n_inferences,
        "n_labelled": cell.realised.n,
        "status": cell.realised.status.value,
        "realised": {k: v.as_dict() for k, v in cell.realised.metrics().items()}
        | {"ece": cell.realised.ece},
        "estimated": {k: v.as_dict() for k, v in cell.estimated.metrics().items()},
        "estimate_reliable": None if rel is None else rel.reliable,
        "estimate_warnings": [] if rel is None else list(rel.reasons),
        "degradation": {
            "status": cell.degradation.status.value,
            "tests": [t.__dict__ for t in cell.degradation.tests],
        },
    }


def report_dict(report: ModelReport) -> dict[str, Any]:
    def window(wr: WindowReport) -> dict[str, Any]:
        w = wr.window
        return {
            "kind": w.kind, "index": w.index, "start": w.start, "end": w.end,
            "complete": w.complete, "inferences": len(w.studies),
            "label_coverage": wr.coverage, "label_latency_median_h": wr.latency_median_h,
            "label_latency_p90_h": wr.latency_p90_h,
            "cells": [_cell_dict(c) for c in wr.cells],
            "subgroup_gaps": [
                {"kind": r.kind, "value": r.value, "metric": r.metric, "finding": t.finding,
                 "estimate": r.estimate.as_dict(), "rest": r.rest.as_dict(),
                 "p_value": r.p_value}
                for t in wr.subgroups for r in t.flagged()],
        }  # fmt: skip

    return {
        "model": report.model,
        "findings": list(report.findings),
        "reference": window(report.reference),
        "windows": [window(w) for w in report.windows],
        "alert_changes": [c.__dict__ for c in report.alert_changes],
    }


def demo_step(database_url: str, *, events: int) -> dict[str, Any]:
    """The performance part of `radwatch demo`: the reference is the first half of the
    stream (the simulator's scenarios start half-way), windows of an eighth; prints
    estimated beside realised performance and any performance alert; returns a summary."""
    from monitor.performance.watch import PerformanceConfig, PerformanceWatchError, run
    from monitor.store import db

    config = PerformanceConfig(window=max(50, events // 8), reference_size=max(100, events // 2))
    print(f"performance: reference = first {config.reference_size} inferences, windows of "
          f"{config.window}")  # fmt: skip
    with db.connect(database_url) as conn:
        try:
            reports = run(conn, config=config)
        except PerformanceWatchError as exc:
            print(f"performance: not evaluated: {exc}")
            return {"error": str(exc)}
    for report in reports:
        print(format_report(report))
    return {
        r.model: {
            "windows": len(r.windows),
            "degraded_windows": [
                w.window.index for w in r.windows
                if any(c.degradation.degraded for c in w.cells)],
            "alert_changes": [c.__dict__ for c in r.alert_changes],
        }
        for r in reports
    }  # fmt: skip

"""How a performance report reads: lines for the terminal (and the demo), a dict for JSON.

At the reading end of the performance watch (monitor/performance/watch.py returns
`ModelReport`s): the label-free estimate beside the realised value, with intervals, label
coverage and latency, subgroup gaps and reliability warnings. Formatting only; no I/O.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from monitor.performance.evaluation import ALL

if TYPE_CHECKING:
    from detectors.performance.realised import Estimate
    from monitor.performance.evaluation import ModelReport, WindowReport


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


def describe_reference(report: ModelReport) -> str:
    """Which studies the windows were judged against, e.g. "frozen drift reference #3 (700
    studies, 2026-11-01 → 2026-11-05)"; a first-N fallback says that no reference is frozen."""
    w = report.reference.window
    n, span = len(w.studies), f"{w.start:%Y-%m-%d} → {w.end:%Y-%m-%d}"
    choice = report.reference_choice
    if choice is not None and choice.kind == "frozen":
        stored = "" if n == choice.size else f" of its {choice.size}"
        return f"frozen drift reference #{choice.drift_reference_id} ({n}{stored} studies, {span})"
    text = f"first {n} inferences ({span}"
    if choice is not None and choice.kind == "fallback":
        text += (f"; no frozen drift reference: `radwatch reference build --model "
                 f"{report.model}` freezes one for drift and performance")  # fmt: skip
    return text + ")"


def format_report(report: ModelReport) -> str:
    lines = []
    ref = report.reference
    described = describe_reference(report)
    for finding in report.findings:
        rc = ref.cell(ALL, finding)
        ref_auc = _est(rc.realised.auroc) if rc else "–"
        lines.append(f"model {report.model} · finding {finding} · reference: {described}, "
                     f"{rc.realised.n if rc else 0} labelled, AUROC {ref_auc}")  # fmt: skip
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
        "reference_source": {
            **(report.reference_choice.as_dict() if report.reference_choice else {}),
            "studies": len(report.reference.window.studies),
            "description": describe_reference(report),
        },
        "windows": [window(w) for w in report.windows],
        "alert_changes": [c.__dict__ for c in report.alert_changes],
    }

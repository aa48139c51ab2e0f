"""The model report's verdict: one paragraph on top saying what changed, where, since when,
whether the model is harmed, and what to do.

Between the report's data (monitor/reports/model_report.py `ReportData`) and its first lines:
built from the period's incidents (monitor/alerts/grouping.py reads root cause, shift type and
the plan's recommended action), their performance alerts, the subgroup table of the period
(monitor/reports/report_tables.py) and the whole model's latest performance window.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from monitor.alerts.incidents import Incident
from monitor.reports.html_parts import esc
from monitor.reports.model_report import ReportData
from monitor.reports.report_cards import _estimate, harmed
from monitor.reports.report_tables import SubgroupLine, subgroup_lines

MIN_LABELLED = 30  # fewer labelled studies in a stratum: harm is "not yet known"
SHIFT_WORDS = {
    "acquisition": "the images' acquisition changed (device, software or protocol)",
    "population": "the patients changed (a population shift)",
    "prevalence": "the share of positive cases changed",
    "integration": "studies reach the model wrongly (an integration fault)",
    "performance": "the model's performance dropped",
    "unknown": "the inputs moved, cause not identified",
}


@dataclass(frozen=True)
class Verdict:
    text: str  # plain text, one paragraph
    tone: str  # "harm" | "warn" | "ok": the paragraph's colour


def _lead(incidents: list[Incident], data: ReportData) -> Incident:
    """The incident to lead with: active before resolved, harmed first, then most alerts."""
    return min(incidents, key=lambda i: (i.state == "resolved", not harmed(data.alerts_of(i)),
                                         -len(i.alerts), i.id))  # fmt: skip


def _stratum_line(lines: list[SubgroupLine], kind: str, value: str) -> SubgroupLine | None:
    return next((s for s in lines if (s.kind, s.value) == (kind, value)), None)


def _harm(data: ReportData, i: Incident, lines: list[SubgroupLine]) -> tuple[str, bool]:
    alerts = data.alerts_of(i)
    perf = [a for a in alerts if a.signal.startswith("performance")]
    where = "there" if i.root_cause_kind != "all" else "overall"
    if perf:
        a = perf[0]
        findings = a.details.get("findings") or {}
        f = next(iter(a.details.get("degraded_findings") or findings), None)
        cell = findings.get(f) or {}
        ref = cell.get("reference_auroc")
        ref_text = f" against {ref:.2f} in the reference" if isinstance(ref, int | float) else ""
        return (
            f"The model is harmed {where}: {f} AUROC {_estimate(cell.get('auroc'))}"
            f"{ref_text} (alert #{a.id}, {a.stratum_kind}={a.stratum_value}).",
            True,
        )
    line = _stratum_line(lines, i.root_cause_kind, i.root_cause_value)
    if line is not None and line.any_outlier:
        worst = [m for m in ("auroc", "sensitivity", "specificity") if line.outlier(m)]
        cell = line.cells[worst[0]]
        return (
            f"The model is worse {where}: {worst[0]} "
            f"{_estimate(cell.estimate.as_dict())} against {_estimate(cell.rest.as_dict())} "
            f"on the other studies.",
            True,
        )
    if line is None or line.n_labelled < MIN_LABELLED:
        n = line.n_labelled if line else 0
        return (
            f"Whether the model is harmed {where} is not yet known: {n} labelled "
            f"stud{'y' if n == 1 else 'ies'} so far.",
            False,
        )
    auroc = line.cells.get("auroc")
    shown = _estimate(auroc.estimate.as_dict()) if auroc else "–"
    return (
        f"No performance drop is measured {where}: AUROC {shown} on {line.n_labelled} "
        "labelled studies.",
        False,
    )


def _overall(data: ReportData) -> str:
    perf = data.performance
    if perf.empty or not data.findings:
        return ""
    f = data.findings[0]
    whole = perf[(perf["stratum_kind"] == "all") & (perf["finding"] == f)
                 & (perf["metric"] == "auroc")]  # fmt: skip
    windows = whole[(whole["window_kind"] != "reference") & whole["realised"].notna()]
    ref = whole[whole["window_kind"] == "reference"]
    if windows.empty:
        return ""
    last = windows.sort_values("window_end").iloc[-1]
    text = (f"Whole model, latest window: {f} AUROC "
            f"{_estimate({'value': last['realised'], 'lower': last['realised_lower'], 'upper': last['realised_upper']})}")  # fmt: skip
    if len(ref) and pd.notna(ref["realised"].iloc[0]):
        text += f" (reference {float(ref['realised'].iloc[0]):.2f})"
    return text + "."


def verdict(data: ReportData) -> Verdict:
    lines = subgroup_lines(data)
    incidents = list(data.incidents)
    overall = _overall(data)
    if not incidents and not data.alerts:
        text = ("No incident or alert in this period: nothing moved beyond the false-alarm "
                f"budget's α ({data.drift_alpha:g}). {overall} Nothing to do beyond the "
                "routine review.")  # fmt: skip
        return Verdict(text.replace("  ", " ").strip(), "ok")
    if not incidents:
        a = data.alerts[0]
        text = (f"{len(data.alerts)} alert(s) in this period, in no incident yet; the first: "
                f"{a.signal} at {a.stratum_kind}={a.stratum_value}. {overall} What to do: review "
                "each alert's evidence below and acknowledge it with what was found.")  # fmt: skip
        return Verdict(text, "warn")
    lead = _lead(incidents, data)
    onset = f"{lead.onset:%Y-%m-%d %H:%M} UTC" if lead.onset else "an unknown time"
    where = "the whole model" if lead.root_cause_kind == "all" else (
        f"{lead.root_cause_kind} {lead.root_cause_value}")  # fmt: skip
    harm, is_harmed = _harm(data, lead, lines)
    active = lead.state != "resolved"
    status = {"open": "open, nobody has taken it yet", "acknowledged":
              f"acknowledged by {lead.acknowledged_by}", "resolved":
              f"resolved by {lead.resolved_by}"}.get(lead.state, lead.state)  # fmt: skip
    text = (
        f"{'What changed' if active else 'What changed (now resolved)'}: "
        f"{SHIFT_WORDS.get(lead.shift_type, lead.shift_type)} at {where}, since {onset} "
        f"(event time; incident #{lead.id}, {status}). {harm} {overall} "
    )
    if lead.stop_rule and not lead.decision:
        text += f"Suspend use recommended: stop rule {lead.stop_rule} holds. "
    text += f"What to do: {lead.recommended_action}"
    others = [i for i in incidents if i.id != lead.id]
    if others:
        text += (" Also in this period: " + "; ".join(
            f"incident #{i.id} ({i.state}, {i.root_cause}, {i.shift_type})" for i in others)
            + ".")  # fmt: skip
    tone = "harm" if is_harmed and active else ("warn" if active else "ok")
    return Verdict(" ".join(text.split()), tone)


def verdict_html(data: ReportData) -> str:
    v = verdict(data)
    return f"<p class='verdict {v.tone}' id='verdict'><b>Verdict.</b> {esc(v.text)}</p>"

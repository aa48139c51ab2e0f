"""The model report as one HTML document: the sections in the order a QA engineer reads them.

The last step before the file is written (monitor/reports/writing.py): takes the loaded
`ReportData` (monitor/reports/model_report.py) and puts, top to bottom, the verdict
(report_verdict.py), the incident and alert cards (report_cards.py), the event-time figures
(report_plots.py), the subgroup table (report_tables.py), the period's most atypical studies and
Evidently's sections (report_evidently.py). Self-contained: inline CSS and SVG, no network.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from monitor.reports import report_cards, report_evidently, report_plots, report_verdict
from monitor.reports.html_parts import CSS, esc
from monitor.reports.model_report import ReportData, ReportError
from monitor.reports.report_tables import subgroup_section


def render(data: ReportData, *, pseudonym_key: bytes | None = None,
           include_evidently: bool = True, images: Any = None) -> str:  # fmt: skip
    """The whole report, verdict first."""
    current = data.current
    if current.empty:
        raise ReportError("no inferences after the reference in the requested period")
    lo, hi = data.period
    examples = report_cards.Examples.gather(data, pseudonym_key, images)
    labelled = int(current[[f"label_{f}" for f in data.findings]].notna().any(axis=1).sum()) if (
        data.findings) else 0  # fmt: skip
    ref = data.reference_span
    ref_text = (f"reference: the model's first {len(data.reference)} studies "
                f"({ref[0]:%Y-%m-%d} – {ref[1]:%Y-%m-%d})") if ref else "no reference"  # fmt: skip
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>radwatch report — {esc(data.model)}</title><style>{CSS}</style>",
        "</head><body><main>",
        f"<h1>{esc(data.model)}: monitoring report</h1>",
        f"<p class='meta'>Period (event time) {lo:%Y-%m-%d %H:%M} – {hi:%Y-%m-%d %H:%M} UTC · "
        f"{len(current)} studies after the reference, {labelled} with a radiologist's label · "
        f"{esc(ref_text)} · drift α {data.drift_alpha:g}, performance α "
        f"{data.performance_alpha:g} · generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        report_verdict.verdict_html(data),
        report_cards.cards_html(data, examples),
        "<h2>Timeline (event time)</h2>",
        report_plots.timeline(data),
        report_plots.strata(data),
        "<h2>Performance per window</h2>",
        report_plots.performance(data),
        "<h2>Subgroups</h2>",
        subgroup_section(data),
        "<h2>Most atypical studies of the period</h2>",
        report_cards.atypical_html(data, examples),
    ]
    if include_evidently:
        parts.append(report_evidently.section(data))
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(
            f"<li class='note'>{esc(n)}</li>" for n in data.notes) + "</ul>")  # fmt: skip
    parts.append("</main></body></html>")
    return "\n".join(parts)

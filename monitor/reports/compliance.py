"""The post-market surveillance report as a document people file: `radwatch compliance-report`.

At the reading end of the data flow, beside the model report and the plan document: what
monitor/reports/compliance_data.py reads for one model and period, and the audit trail's
verification (monitor/audit/verify.py), become one self-contained HTML page
(monitor/reports/compliance_sections.py), printed to an A4 PDF by headless Chromium
(monitor/reports/printing.py) when the file name ends in .pdf. A summary page first — period,
versions and sites, the plan, incidents and alerts by state, the audit trail's verification
as it is, performance by subgroup — then references, detectors, the workflow, decisions,
the audit trail, sign-off lines and appendices, each section on a new page.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import psycopg

from monitor.audit.trail import radwatch_version
from monitor.audit.verify import VerifyResult
from monitor.reports import compliance_sections as s
from monitor.reports.compliance_data import ComplianceData
from monitor.reports.compliance_data import load as load_data
from monitor.reports.printing import PrintError, print_pdf

SECTIONS = ("Monitoring plan", "References and their provenance", "Detector configurations",
            "Alert and incident workflow", "Decisions", "Audit trail", "Sign-off",
            "Appendix A. Every fitted detector", "Appendix B. Detector settings")  # fmt: skip


def load(conn: psycopg.Connection, model: str, start: datetime, end: datetime,
         verification: VerifyResult) -> ComplianceData:  # fmt: skip
    """What the document shows for `model` over [start, end) (reads only)."""
    return load_data(conn, model, start, end, verification)


def render(data: ComplianceData) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    bodies = (s.plan_section, s.references_section, s.detectors_section, s.workflow_section,
              s.decisions_section, s.audit_section, lambda _: s.sign_off(), s.fits_appendix,
              s.settings_appendix)  # fmt: skip
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Post-market surveillance report: {_e(data.model)}, "
        f"{_e(s.period_text(data.start, data.end))}</title>",
        f"<style>{s.document_css(data)}</style></head><body>",
        f"<h1>Post-market surveillance report: {_e(data.model)}</h1>",
        f"<p class='lead'>Written by radwatch {_e(radwatch_version())} from its database and "
        "audit trail. Identifiers are pseudonyms; no patient data is held.</p>",
        s.summary(data),
    ]
    for number, (title, body) in enumerate(zip(SECTIONS, bodies, strict=True), start=1):
        heading = title if title.startswith("Appendix") else f"{number}. {title}"
        parts.append(f"<section><h2>{_e(heading)}</h2>{body(data)}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(data: ComplianceData, out: Path) -> str:
    """Write the report to `out`, HTML or (ending in .pdf) an A4 PDF; returns the line the
    command prints. PrintError: another file type, or Chromium missing or failing."""
    kind = out.suffix.lower()
    if kind not in (".html", ".htm", ".pdf"):
        raise PrintError(f"--out {out}: give a file ending in .html or .pdf")
    document = render(data)
    if kind == ".pdf":
        print_pdf(document, out)
    else:
        out.write_text(document, encoding="utf-8")
    v = data.verification
    audit = ("audit trail NOT intact" if not v.ok else
             f"audit trail intact, {min(v.checkpointed_through, v.rows)} of {v.rows} rows under "
             "a signed checkpoint")  # fmt: skip
    return (
        f"compliance report for {data.model}, {s.period_text(data.start, data.end)}: "
        f"{len(data.incidents)} incidents, {len(data.alerts)} alerts; {audit}: {out}"
    )


def _e(text: object) -> str:
    return html.escape(str(text))

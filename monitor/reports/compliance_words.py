"""Words and HTML pieces of the compliance document: names a reader understands, escaped cells.

Beside monitor/reports/compliance_sections.py, which builds the pages with these: strata,
detectors, signals and audit actions named in words (never a table, column or code name),
dictionaries as "key: value" text, times in UTC, and the fixed-layout tables that wrap inside
an A4 page. Pure functions, no I/O.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor.reports.plan_document import CSS as PLAN_CSS
from monitor.reports.plan_regulations import SIGNAL_NAMES, STRATUM_NAMES

# The document's house style: the plan document's, with its summary boxes, cards and sign-off.
CSS = (
    PLAN_CSS
    + """
.lead{font-size:10.5pt;margin:0 0 3mm}.facts th{width:28%}
.ok{border:2px solid #2c4a6b;background:#f3f7fb}.bad{border:2px solid #b91c1c;
background:#fef2f2;color:#7f1d1d}section{break-before:page}section.cont{break-before:auto}
.card{border:1px solid #b9c0c8;padding:2mm 3mm;margin:3mm 0;break-inside:avoid-page}
.card h3{margin-top:0}.flag{color:#9a3412;font-weight:600}.small{font-size:8.5pt}
td.num{text-align:right}.sign td{height:13mm}"""
)

TESTS = {"ks": "Kolmogorov–Smirnov test, per numeric feature",
         "chi2": "Chi-squared test, per categorical attribute",
         "mmd": "Maximum mean discrepancy, on embeddings",
         "cvm_online": "Online Cramér–von Mises detector, study by study"}  # fmt: skip


def stratum(kind: str, value: str) -> str:
    if kind == "all":
        return "whole model"
    return f"{STRATUM_NAMES.get(kind, kind.replace('_', ' '))} = {value}"


def detector_name(name: str) -> str:
    """ "ks:scores" → "Kolmogorov–Smirnov test, per numeric feature (scores)"."""
    test, _, signal = name.partition(":")
    return f"{TESTS.get(test, test)}" + (f" ({signal.replace('_', ' ')})" if signal else "")


def signal_name(signal: str) -> str:
    return SIGNAL_NAMES.get(signal, signal.replace("_", " ")).split(":")[0]


def action_name(action: str) -> str:
    """ "alert.acknowledged" → "Alert acknowledged"."""
    return action.replace(".", " ").replace("_", " ").capitalize()


def readable(value: Any) -> str:
    """A dictionary or list as text a person reads: "site: a 3, b 4; scanner: …"."""
    if isinstance(value, Mapping):
        if all(not isinstance(v, Mapping | list) for v in value.values()):
            return ", ".join(f"{str(k).replace('_', ' ')} {readable(v)}"
                             for k, v in value.items()) or "–"  # fmt: skip
        return "; ".join(f"{str(k).replace('_', ' ')}: {readable(v)}"
                         for k, v in value.items()) or "–"  # fmt: skip
    if isinstance(value, list | tuple):
        return ", ".join(readable(v) for v in value) or "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return "–" if value is None else str(value)


def when_text(at: datetime | None) -> str:
    return f"{utc_text(at)} UTC" if at else "unknown"


def utc_text(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M}"


def facts_table(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f"<table class='facts'>{body}</table>"


def fixed_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, raw: bool = False,
           widths: Sequence[int] = ()) -> str:  # fmt: skip
    """A fixed-layout table (widths in %) that wraps inside an A4 page; cells escaped unless
    `raw` (then the caller escaped them)."""
    cols = "".join(f"<col style='width:{w}%'>" for w in widths)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else esc(c)}</td>" for c in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return f"<table><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>{body}</table>"


def esc(text: object) -> str:
    return html.escape(str(text))

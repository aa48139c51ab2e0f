"""The monitoring plan as a document people sign and file: `radwatch plan render`.

At the reading end of the data flow, beside the other reports: the plan in force and what its
false-alarm budget derives (monitor/reports/plan_summary.py), the active reference, the
approvals with their diffs from the audit trail, and what the plan cannot see (detectability,
monitor/plan/check.py) become one self-contained HTML file, printed to an A4 PDF
(monitor/reports/printing.py) when the file name ends in .pdf. Each section names the clauses
it renders (the names incidents cite) and the regulatory topics it covers
(monitor/reports/plan_regulations.py).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from detectors.detectability import METHOD, Detectability, Row
from detectors.drift.contract import ALL
from monitor.audit.trail import radwatch_version
from monitor.config import Settings
from monitor.plan.document import PlanError, StopRule
from monitor.reports import inventory
from monitor.reports.plan_regulations import (
    COVERS,
    SHIFT_TITLES,
    SIGNAL_NAMES,
    SOURCES,
    STRATUM_NAMES,
)
from monitor.reports.plan_summary import ShownPlan, shown
from monitor.reports.printing import PrintError, print_pdf

CSS = """@page{size:A4;margin:16mm 15mm 18mm}
body{font-family:"DejaVu Sans",Arial,sans-serif;font-size:10pt;line-height:1.4;color:#1b1b1b;
max-width:180mm;margin:0 auto;padding:16mm 0}
h1{font-size:17pt;margin:0 0 2mm}h2{font-size:12.5pt;border-bottom:1.5px solid #2c4a6b;
color:#2c4a6b;margin:7mm 0 1.5mm;break-after:avoid}h3{font-size:10.5pt;margin:3mm 0 1mm}
table{border-collapse:collapse;width:100%;table-layout:fixed;overflow-wrap:anywhere;
margin:1.5mm 0}td,th{border:1px solid #b9c0c8;padding:2px 5px;text-align:left;
vertical-align:top}th{background:#eef1f4;font-weight:600}tr{break-inside:avoid}
.cover th{width:30%}.covers{font-size:8.5pt;color:#444;margin:0 0 1.5mm}
.clause{font-family:"DejaVu Sans Mono",monospace;font-size:8pt;color:#555;
overflow-wrap:break-word}
.box{padding:2.5mm 4mm;margin:3mm 0;border-radius:2px}.warning{border:2px solid #b45309;
background:#fff7ed;color:#7c2d12}.approved{border:2px solid #2c4a6b;background:#f3f7fb}
.muted{color:#555}.sha{font-family:monospace;font-size:8pt;overflow-wrap:anywhere}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:8pt;background:#f6f6f6;padding:2mm}
ol.sources{font-size:8.5pt}summary{cursor:pointer}
@media print{body{max-width:none;padding:0}}"""


@dataclass(frozen=True)
class Approval:
    """One `plan.approved` row of the audit trail."""

    seq: int
    at: datetime
    by: str
    version: str
    replaces: str | None
    note: str | None
    sha256: str | None
    diff: str


@dataclass(frozen=True)
class PlanDocument:
    shown: ShownPlan
    reference: inventory.ActiveReference | None
    approvals: tuple[Approval, ...]
    detectability: Detectability | None = None  # what the plan can and cannot see
    detectability_missing: str = "not computed for this document"  # why it is None
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def next_review(self) -> datetime | None:
        at = self.shown.approved_at
        return at + timedelta(days=self.shown.plan.review.cadence_days) if at else None


def load(conn: psycopg.Connection, model: str, settings: Settings, *,
         detectability: bool = True) -> PlanDocument:  # fmt: skip
    """What the document shows for `model` (reads only); `detectability`: run the plan's
    detectability check (monitor/plan/check.py, seconds of resampling) for section 7."""
    found = shown(conn, model, settings)
    reference = conn.execute(
        "SELECT id, n_events, created_at FROM drift_references WHERE model_name = %s AND active",
        (model,),
    ).fetchone()
    seen, missing = None, "not computed for this document"
    if detectability and reference is None:
        missing = (f"no frozen drift reference for {model}: nothing to size shifts against "
                   f"(radwatch reference build --model {model} --first N)")  # fmt: skip
    elif detectability:
        # Imported here: reading a fitted reference loads the drift backends (seconds).
        from monitor.plan import check

        try:
            seen = check.detectability(conn, model, found.plan)
        except PlanError as exc:  # a reference that cannot be read
            missing = str(exc)
    rows = conn.execute(
        """SELECT seq, recorded_at, actor, entity_version, refs->>'replaces', reason,
                  detail->>'sha256', coalesce(detail->>'diff', '')
           FROM audit_events WHERE action = 'plan.approved' AND entity_id = %s ORDER BY seq""",
        (model,),
    ).fetchall()
    return PlanDocument(
        shown=found,
        reference=inventory.ActiveReference(*reference) if reference else None,
        approvals=tuple(Approval(*r) for r in rows),
        detectability=seen,
        detectability_missing=missing,
    )


def write(doc: PlanDocument, out: Path) -> str:
    """Write the document to `out`, HTML or (ending in .pdf) an A4 PDF; returns the line the
    command prints. PrintError: another file type, or Chromium missing or failing."""
    kind = out.suffix.lower()
    if kind not in (".html", ".htm", ".pdf"):
        raise PrintError(f"--out {out}: give a file ending in .html or .pdf")
    if kind == ".pdf":
        print_pdf(render(doc), out)
    else:
        out.write_text(render(doc), encoding="utf-8")
    s = doc.shown
    state = f"approved by {s.approved_by}" if s.approved_by else "default plan, not approved"
    return f"plan {s.plan.version} for {s.plan.model} ({state}): {out}"


def render(doc: PlanDocument) -> str:
    """The plan as one self-contained HTML page (no scripts, no external resources)."""
    p, s = doc.shown.plan, doc.shown
    number = {name: i for i, name in enumerate(p.clauses(), start=1)}
    in_section = {key: [n for n in p.clauses() if _section_of(n) == key] for key in COVERS}
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Post-market monitoring plan: {_e(p.model)} {_e(p.version)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Post-market monitoring plan: {_e(p.model)}</h1>",
        _cover(doc),
        "<h2>How this plan maps to the regulations</h2>",
        _table(("Section", "Clauses", "Covers"), [
            (f"{i}. {_e(title)}", _e(_span([number[n] for n in in_section[key]])),
             "<br>".join(f"<b>{_e(src)}</b> {_e(topic)}" for src, topic in topics))
            for i, (key, (title, topics)) in enumerate(COVERS.items(), start=1)
        ], raw=True, widths=(30, 12, 58)),
    ]  # fmt: skip

    def section(key: str, *body: str) -> None:
        title, topics = COVERS[key]
        parts.append(f"<section><h2>{list(COVERS).index(key) + 1}. {_e(title)}</h2>")
        parts.append("<p class='covers'>Covers: " + "; ".join(
            f"<b>{_e(src)}</b> {_e(topic)}" for src, topic in topics) + "</p>")  # fmt: skip
        parts.extend(body)
        parts.append("</section>")

    def clause(name: str) -> str:
        return (f"<b>{number[name]} · {_e(_clause_title(name))}</b><br>"
                f"<span class='clause'>{_e(name).replace('.', '.<wbr>')}</span>")  # fmt: skip

    def says(*rows: tuple[str, str]) -> str:
        return _table(("Clause", "Says"), [(clause(n), text) for n, text in rows], raw=True,
                      widths=(28, 72))  # fmt: skip

    ref = doc.reference
    section("use", says(("intended_use", _e(p.intended_use))),
            f"<p>Owner of this plan: <b>{_e(p.owner)}</b>.</p>")  # fmt: skip
    section("watched", says(
        ("signals", "<br>".join(_e(SIGNAL_NAMES.get(x, x)) for x in p.signals)),
        ("strata", _e("Each signal for the whole model and for each " + ", ".join(
            STRATUM_NAMES.get(x, x) for x in p.strata) + " seen in the reference.")),
        ("windows", _e(f"Drift: windows of {p.windows.drift:,} studies; performance: windows "
                       f"of {p.windows.performance:,} inferences; a window closes after "
                       f"{p.windows.max_span_days:g} days even when not full.")),
        ("reference", _e(
            f"A frozen reference of at least {p.reference.min_studies:,} studies. "
            + (f"In use: reference #{ref.id}, {ref.n_events:,} studies, built "
               f"{_utc(ref.built_at)} UTC. " if ref else
               "None built yet: drift is not watched until one is (radwatch reference build). ")
            + p.reference.rebuild)),
    ))  # fmt: skip
    section("budget", *_budget(s, clause("false_alarm_budget")))
    section("incidents", _table(("Clause", "Severity", "Owner", "Recommended action"), [
        (clause(p.incident_clause(kind)), _e(t.severity), _e(t.owner), _e(t.action))
        for kind, t in p.incident_types.items()
    ], raw=True, widths=(25, 12, 23, 40)))  # fmt: skip
    section("stop", _table(("Clause", "Holds when", "Then"), [
        (clause(f"stop_rules.{r.id}"), _e(_condition(r)) + f"<br><span class='muted'>"
         f"{_e(r.description)}</span>",
         _e(f"A critical incident “suspend use recommended” goes to the {r.receiver} "
            "receiver; the person's decision (suspend or continue, with a reason) is recorded "
            "in the audit trail."))
        for r in p.stop_rules
    ], raw=True, widths=(25, 40, 35)) if p.stop_rules else "<p class='box warning'>No stop rule: "
       "nothing in this plan recommends suspending use.</p>")  # fmt: skip
    section("review", says(
        ("review", _e(f"Reviewed every {p.review.cadence_days} days by {p.review.owner}. "
                      f"Next review: {_next_review(doc)}.")),
        ("retention", _e(f"The audit trail and its signed checkpoints are kept "
                         f"{p.retention.audit_years} years; stored inferences and labels "
                         f"(pseudonymised) {p.retention.events_days} days.")),
    ))  # fmt: skip
    section("blind", _blind(doc))
    section("history", _history(doc))
    parts.append("<h2>Sources</h2><ol class='sources'>"
                 + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>" for k, v in SOURCES.items())
                 + "</ol></body></html>")  # fmt: skip
    return "\n".join(parts)


def _section_of(clause: str) -> str:
    head = clause.split(".", 1)[0]
    return {
        "intended_use": "use",
        "false_alarm_budget": "budget",
        "incident_types": "incidents",
        "stop_rules": "stop",
        "review": "review",
        "retention": "review",
    }.get(head, "watched")


def _clause_title(clause: str) -> str:
    head, _, tail = clause.partition(".")
    if head == "incident_types":
        return SHIFT_TITLES.get(tail, tail)
    return (tail or head).replace("_", " ").replace("-", " ").capitalize()


def _span(numbers: list[int]) -> str:
    if not numbers:
        return "–"
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}–{numbers[-1]}"


def _cover(doc: PlanDocument) -> str:
    s, p = doc.shown, doc.shown.plan
    if s.approved_by and s.approved_at:
        state = (
            f"<div class='box approved'><b>Approved — in force</b> since "
            f"{_utc(s.approved_at)} UTC, approved by <b>{_e(s.approved_by)}</b>.</div>"
        )
        status, by, since = "approved, in force", s.approved_by, f"{_utc(s.approved_at)} UTC"
    else:
        state = (
            "<div class='box warning'><b>Default plan — not approved.</b> No plan has been "
            "approved for this model, so radwatch runs these defaults. Before this document "
            "can serve as the post-market monitoring plan, a named person approves a plan: "
            f"<code>radwatch plan approve --model {_e(p.model)} FILE --by WHO</code>.</div>"
        )
        status, by, since = "default plan — not approved", "nobody", "–"
    rows = [("Model", p.model), ("Plan version", p.version), ("Status", status),
            ("Approved by", by), ("In force since", since),
            ("Intended use", p.intended_use), ("Owner", p.owner),
            ("Next review", _next_review(doc) + (f", by {p.review.owner}" if doc.next_review
                                                 else "")),
            ("Clauses", f"{len(p.clauses())}, numbered below; incidents cite them by name"),
            ("Generated", f"{_utc(doc.generated_at)} UTC by radwatch {radwatch_version()}")]  # fmt: skip
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    body += f"<tr><th>Plan fingerprint (SHA-256)</th><td class='sha'>{_e(s.sha256)}</td></tr>"
    return state + f"<table class='cover'>{body}</table>"


def _utc(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M}"


def _next_review(doc: PlanDocument) -> str:
    due = doc.next_review
    if due is None:
        return "none scheduled: the plan is not approved"
    late = " (overdue)" if due < doc.generated_at else ""
    return f"{due.astimezone(UTC):%Y-%m-%d}{late}"


def _budget(s: ShownPlan, clause: str) -> list[str]:
    b, d = s.plan.false_alarm_budget, s.derived
    lines = [str(x) for x in d.get("explanation", [])]

    def why(prefix: str) -> str:
        return next((x.split(":", 1)[1].strip() for x in lines if x.startswith(prefix)), "")

    online = d.get("online_ert")
    rows = [
        ("Drift tests", f"α = {_num(d.get('drift_alpha'))} per window; an alert opens after "
                        f"{d.get('drift_open_after')} consecutive firing windows",
         why("drift windows")),
        ("Performance tests", f"α = {_num(d.get('performance_alpha'))} per window; opens after "
                              f"{d.get('performance_open_after')} consecutive windows",
         why("performance windows")),
        ("Performance CUSUM", f"ARL0 = {_num(d.get('cusum_arl0'))} labelled studies",
         "labelled studies a day ÷ the CUSUM's share of the budget (false alarms a day)"),
        ("Online detector", "off" if online is None else f"on, ERT = {_num(online)} studies",
         why("online detector")),
    ]  # fmt: skip
    when = d.get("derived_at")
    basis = (f"Derived by detection on {str(when)[:16].replace('T', ' ')} UTC."
             if when else "Detection has not run under this budget yet: derived now, at the "
             "volume observed today.")  # fmt: skip
    return [
        f"<p>{clause}<br><b>At most {b.incidents:g} false incident(s) per {b.days:g} days for "
        f"this model.</b> Every test setting below follows from that one number and the "
        f"observed volume; none is chosen by hand. {_e(basis)}</p>",
        f"<p class='muted'>{_e(why('volume'))}. Shares: {_e(why('shares').replace('_', ' '))}. "
        f"{_e(why('bound'))}.</p>",
        _table(("Setting", "Value", "Why"), rows, widths=(22, 33, 45)),
    ]


def _condition(rule: StopRule) -> str:
    if rule.shift_type:
        return f"an incident of shift type “{rule.shift_type}” opens"
    return (f"{rule.metric} is below {rule.below:g} with {rule.confidence:.0%} confidence "
            "(its upper bound is below the floor)")  # fmt: skip


def _blind(doc: PlanDocument) -> str:
    intro = (
        "<p>For each signal and stratum at the observed volume: the smallest shift the plan "
        "detects within the stated time at the budgeted false-alarm rate, estimated from the "
        "reference by resampling, and the strata too small to watch. A smaller shift, or one "
        "in a stratum too small to watch, can go unseen: in Koch et al. (2024) a shift in "
        "patient sex needed more than 30,000 studies to detect where image-quality shifts "
        "needed 1,000.</p>"
    )
    d = doc.detectability
    if d is None:
        return intro + (f"<p class='box warning'>{_e(doc.detectability_missing.rstrip('.'))}. "
                        "Run <code>radwatch plan check --model "
                        f"{_e(doc.shown.plan.model)}</code>.</p>")  # fmt: skip
    s, v = d.setting, d.volume
    parts = [intro, f"<p>At {v.studies_per_day:,.0f} studies a day ({_e(v.basis)}): drift "
             f"windows of {s.studies_per_window:,.0f} studies, {s.windows_per_day:.3g} a day, "
             f"{s.windows_within} in {s.within_days:g} days; α {s.alpha:.3g} per window, an "
             f"alert after {s.persistence} consecutive firing windows. A shift is in reference "
             f"standard deviations of the signal's leading feature, detected within "
             f"{s.within_days:g} days with probability ≥ {s.target:.0%}.</p>"]  # fmt: skip
    parts.append(_not_watched(d))
    parts.append(_table(("Signal", "Stratum", "Share", "Studies a window", "Smallest shift",
                         "Note"), [
        (r.signal.replace("_", " "), _stratum(r), f"{r.share:.0%}", f"{r.per_window:.0f}",
         _shift(r), r.reason or f"leading feature {r.feature}")
        for r in d.rows if r.watchable], widths=(14, 22, 9, 11, 16, 28)))  # fmt: skip
    parts += [f"<p class='muted'>Note: {_e(n)}.</p>" for n in d.notes]
    parts.append(f"<p class='muted'>Method: {_e(METHOD)}</p>")
    return "".join(parts)


def _not_watched(d: Detectability) -> str:
    """The rows not watched, one line per reason: which strata, which signals."""
    groups: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for r in d.too_small():
        strata, signals = groups.setdefault(r.reason, ({}, {}))
        strata[_stratum(r)], signals[r.signal.replace("_", " ")] = None, None
    if not groups:
        return "<p>Every signal is watched in every stratum.</p>"
    every = {r.signal.replace("_", " ") for r in d.rows}
    items = "".join(
        f"<li>{_e(', '.join(strata))} — "
        f"{_e('every signal' if set(signals) == every else ', '.join(signals))}: {_e(reason)}</li>"
        for reason, (strata, signals) in groups.items())  # fmt: skip
    return (f"<div class='box warning'><b>Not watched</b> (too small, not fitted, or no data; "
            f"{len(d.too_small())} of {len(d.rows)} signal × stratum pairs):<ul>{items}</ul>"
            "</div>")  # fmt: skip


def _shift(row: Row) -> str:
    if row.min_shift_sd is None:
        return "–"
    where = row.median_to_percentile
    return f"{row.min_shift_sd:.2f} SD" + ("" if where is None else f" (median → p{where:.0f})")


def _stratum(row: Row) -> str:
    if (row.stratum_kind, row.stratum_value) == ALL:
        return "whole model"
    return f"{row.stratum_kind.replace('_', ' ')} = {row.stratum_value}"


def _history(doc: PlanDocument) -> str:
    if not doc.approvals:
        return ("<p>No approval recorded: the default plan has been in force since the model's "
                "first study.</p>")  # fmt: skip
    out = [_table(("When (UTC)", "Approved by", "Version (SHA-256)", "Replaces", "Note"), [
        (_utc(a.at), a.by, f"{a.version} ({(a.sha256 or '?')[:12]}…)", a.replaces or "–",
         a.note or "–")
        for a in doc.approvals], widths=(18, 18, 26, 14, 24))]  # fmt: skip
    for a in doc.approvals:
        n = a.diff.count("\n")
        out.append(f"<details><summary>Changes in version {_e(a.version)} against "
                   f"{_e(a.replaces or 'none')} ({n} diff lines)</summary>"
                   f"<pre>{_e(a.diff)}</pre></details>")  # fmt: skip
    return "".join(out)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, raw: bool = False,
           widths: Sequence[int] = ()) -> str:  # fmt: skip
    """A table; cells are escaped unless `raw` (then the caller escaped them); `widths` in %
    (fixed widths keep every table inside an A4 page)."""
    cols = "".join(f"<col style='width:{w}%'>" for w in widths)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c if raw else _e(c)}</td>" for c in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return f"<table><colgroup>{cols}</colgroup><tr>{head}</tr>{body}</table>"


def _num(value: Any) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _e(text: object) -> str:
    return html.escape(str(text))

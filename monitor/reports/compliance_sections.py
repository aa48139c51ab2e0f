"""The compliance document's pages, as HTML: what `radwatch compliance-report` renders.

Between monitor/reports/compliance_data.py (what the database says) and monitor/reports/
compliance.py (which writes the file, or prints it to PDF): a summary page, then one section
per topic, sign-off lines and appendices. Written for a reader who files it: human headings
and labels (never a table or column name), dictionaries as "key: value" text, every table of
fixed layout inside an A4 page, and nothing left out without saying how much and where the
rest is. Pure functions, no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from monitor.audit.verify import VerifyResult
from monitor.reports.compliance_data import (
    METRICS,
    AlertRow,
    ComplianceData,
    DetectorFit,
    IncidentRow,
    Interval,
    Reference,
)
from monitor.reports.compliance_words import (
    CSS,
    action_name,
    detector_name,
    esc,
    facts_table,
    fixed_table,
    readable,
    signal_name,
    stratum,
    utc_text,
    when_text,
)
from monitor.reports.plan_regulations import SHIFT_TITLES

MAX_ALERTS = 200  # alerts listed one by one; beyond that the document says how to get the rest
STATES = ("open", "acknowledged", "resolved")
METRIC_NAMES = {"sensitivity": "Sensitivity", "specificity": "Specificity", "auroc": "AUROC"}
SIGN_OFF = ("Prepared by (monitoring owner)", "Reviewed by (clinical lead)",
            "Approved by (AI governance)")  # fmt: skip


def document_css(data: ComplianceData) -> str:
    """The house style plus a running header and page numbers (CSS page-margin boxes, which
    Chromium prints since version 131; a browser without them prints no header, nothing
    else changes)."""
    head = _css_text(f"Post-market surveillance report · {data.model}")
    period = _css_text(period_text(data.start, data.end))
    box = "font-size:8pt;color:#555"
    return CSS + (
        f'\n@page{{@top-left{{content:"{head}";{box}}}'
        f'@top-right{{content:"{period}";{box}}}'
        f'@bottom-right{{content:"Page " counter(page) " of " counter(pages);{box}}}}}'
    )


def _css_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def period_text(start: datetime, end: datetime) -> str:
    """The period as a reader says it: whole days end-inclusive, else times (end exclusive)."""
    s, e = start.astimezone(UTC), end.astimezone(UTC)
    if s.time() == e.time() == datetime.min.time():
        return f"{s:%Y-%m-%d} to {e - timedelta(days=1):%Y-%m-%d} (UTC, whole days)"
    return f"{s:%Y-%m-%d %H:%M} to {e:%Y-%m-%d %H:%M} UTC (end excluded)"


# --- the summary page -------------------------------------------------------------------------


def summary(data: ComplianceData) -> str:
    n = sum(v.inferences for v in data.versions)
    versions = Counter[str]()
    for v in data.versions:
        versions[v.version] += v.inferences
    sites = sorted({v.site for v in data.versions})
    active = next((r for r in data.references if r.active), None)
    facts = [
        ("Model", esc(data.model)),
        ("Period", esc(period_text(data.start, data.end))),
        ("Studies scored", f"{n:,}" if n else "none in this period"),
        ("Model versions", esc(", ".join(f"{k} ({c:,} studies)" for k, c in versions.items())
                              or "none seen")),
        ("Sites", esc(", ".join(sites) or "none seen")),
        ("Monitoring plan", _plan_line(data)),
        ("Drift reference in use", esc(f"#{active.id}, {active.n_events:,} studies, built "
                                      f"{utc_text(active.built_at)} UTC by {active.built_by}")
         if active else "<span class='flag'>none: drift is not watched</span>"),
        ("Generated", esc(f"{utc_text(data.generated_at)} UTC")),
    ]  # fmt: skip
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    parts = [f"<table class='facts'>{body}</table>", audit_statement(data.verification)]
    parts.append("<h2>Incidents and alerts</h2>")
    parts.append(_states(data))
    parts.append("<h2>Performance by subgroup</h2>")
    parts.append(_subgroup_table(data))
    return "".join(parts)


def _plan_line(data: ComplianceData) -> str:
    p = data.plan
    if p.approved_by and p.approved_at:
        return esc(f"version {p.version}, approved by {p.approved_by} on "
                  f"{utc_text(p.approved_at)} UTC")  # fmt: skip
    return ("<span class='flag'>default plan, not approved</span>: no named person has "
            "approved a monitoring plan for this model")  # fmt: skip


def audit_statement(v: VerifyResult) -> str:
    """The audit trail's verification, said as it is: a chain intact but under no signed
    checkpoint is not evidence against the database owner, who can recompute every hash."""
    if not v.ok:
        first = v.first
        return ("<div class='box bad'><b>Audit trail NOT intact.</b> " + esc(
            first.line() if first else "") + (f" ({len(v.findings)} findings in all; "
            "radwatch audit verify lists them.)" if len(v.findings) > 1 else "") + "</div>")  # fmt: skip
    if v.rows == 0:
        return ("<div class='box warning'><b>Audit trail empty:</b> nothing has been recorded, "
                "so nothing here can be traced to a recorded decision.</div>")  # fmt: skip
    covered = min(v.checkpointed_through, v.rows)
    if covered == 0:
        return (f"<div class='box warning'><b>Audit trail: hash chain intact; 0 of "
                f"{v.rows:,} rows under a signed checkpoint.</b> Without a signed checkpoint "
                "the hash chain shows accidental change only: whoever controls the database can "
                "rewrite history and recompute every hash. Seal the trail with "
                "<code>radwatch audit checkpoint</code> and keep the public key and the "
                "checkpoint file outside the database.</div>")  # fmt: skip
    tail = (f" Rows after seq {v.checkpointed_through:,} were recorded since the last "
            "checkpoint and are covered by the hash chain only."
            if covered < v.rows else "")  # fmt: skip
    key = f", signatures checked with key {esc(v.key_id)}" if v.key_id else ""
    return (f"<div class='box ok'><b>Audit trail intact; {covered:,} of {v.rows:,} rows under "
            f"a signed checkpoint</b> ({v.checkpoints} checkpoint"
            f"{'s' if v.checkpoints != 1 else ''}{key}).{tail}</div>")  # fmt: skip


def _states(data: ComplianceData) -> str:
    inc = Counter(i.state for i in data.incidents)
    alerts = Counter(a.state for a in data.alerts)
    rows = [(s.capitalize(), str(inc[s]), str(alerts[s])) for s in STATES]
    rows.append(("All", str(len(data.incidents)), str(len(data.alerts))))
    table = fixed_table(("State", "Incidents", "Alerts"), rows, widths=(40, 30, 30))
    waiting = [i for i in data.incidents if i.stop_rule and not i.decision]
    note = ("<div class='box warning'><b>Suspend use recommended, no decision yet:</b> "
            + ", ".join(f"incident #{i.id} (stop rule {esc(i.stop_rule)})" for i in waiting)
            + ".</div>") if waiting else ""  # fmt: skip
    active = [i for i in data.incidents if i.state != "resolved"]
    items = "".join(f"<li>{_unresolved(i)}</li>" for i in active)
    still = (f"<p><b>Not resolved at the time of writing:</b></p><ul>{items}</ul>"
             if active else "<p>Every incident of the period is resolved.</p>")  # fmt: skip
    return (
        f"<p class='muted small'>Of the period: active at some time in it, or describing "
        f"data from it (see section 4).</p>{table}{note}{still}"
    )


def _unresolved(i: IncidentRow) -> str:
    """One line for an incident still open: what, where, since when, and who holds it."""
    line = (f"<b>Incident #{i.id}</b>, {esc(SHIFT_TITLES.get(i.shift_type, i.shift_type))} at "
            f"{esc(stratum(i.root_cause_kind, i.root_cause_value))}, {esc(i.state)} since "
            f"{esc(utc_text(i.opened_at))} UTC")  # fmt: skip
    if i.decision and i.decided_at:
        verdict = "use suspended" if i.decision == "suspend" else "use continued"
        line += f"; <span class='flag'>{verdict}</span> by {esc(i.decided_by)} on " \
                f"{esc(utc_text(i.decided_at))} UTC"  # fmt: skip
    elif i.acknowledged_by:
        line += f"; acknowledged by {esc(i.acknowledged_by)}"
    else:
        line += "; <span class='flag'>nobody has acknowledged it</span>"
    return line + "."


def _subgroup_table(data: ComplianceData) -> str:
    if not data.subgroups:
        return ("<p>No performance results in this period: no labelled windows completed "
                "(radwatch run, or radwatch performance --record, records them).</p>")  # fmt: skip
    findings = sorted({r.finding for r in data.subgroups})
    one = len(findings) == 1
    rows = []
    for r in data.subgroups:
        flags = []
        if r.worse_than_rest:
            flags.append("worse than the other strata")
        if r.degraded_windows:
            flags.append(f"degraded in {r.degraded_windows} of {r.windows} windows")
        rows.append((
            *(() if one else (esc(r.finding),)), esc(stratum(r.stratum_kind, r.stratum_value)),
            f"{r.labelled:,}", *(_interval(r.metrics.get(m)) for m in METRICS),
            f"<span class='flag'>{esc('; '.join(flags))}</span>" if flags else "–",
        ))  # fmt: skip
    header = (
        *(() if one else ("Finding",)),
        "Subgroup",
        "Labelled",
        *(METRIC_NAMES[m] for m in METRICS),
        "Flag",
    )
    widths = (21, 13, 15, 15, 15, 21) if one else (10, 19, 11, 14, 14, 14, 18)
    what = f"Finding {findings[0]}: realised" if one else "Realised"
    return (f"<p class='muted small'>{esc(what)} values (radiologist reads) with 95% intervals, "
            f"in each subgroup's latest window of the period (windows of "
            f"{esc(_window_kind(data.performance_window))}); a flag when the subgroup test or "
            "the comparison with the reference found it worse.</p>"
            + fixed_table(header, rows, raw=True, widths=widths))  # fmt: skip


def _window_kind(kind: str | None) -> str:
    if kind and kind.startswith("count:"):
        return f"{int(kind[6:]):,} studies"
    return {"day": "one day", "week": "one week"}.get(kind or "", kind or "–")


def _interval(i: Interval | None) -> str:
    if i is None or i.value is None:
        return "–"
    if i.lower is None or i.upper is None:
        return f"{i.value:.2f}"
    return f"{i.value:.2f}<br><span class='muted small'>({i.lower:.2f}–{i.upper:.2f})</span>"


# --- sections ---------------------------------------------------------------------------------


def plan_section(data: ComplianceData) -> str:
    p = data.plan
    intro = (f"<p>In force: version <b>{esc(p.version)}</b> (fingerprint "
             f"<span class='sha'>{esc(p.sha256[:16])}…</span>). The plan states what is watched, "
             "the false-alarm budget, who owns each kind of incident and the stop rules; "
             f"<code>radwatch plan render --model {esc(data.model)} --out plan.pdf</code> "
             "prints it in full.</p>")  # fmt: skip
    if not p.approvals:
        return intro + ("<div class='box warning'>No plan has been approved for this model: "
                        "radwatch runs its default plan.</div>")  # fmt: skip
    return intro + fixed_table(("Version", "Approved by", "When (UTC)", "Note"), [
        (a.version, a.approved_by, utc_text(a.approved_at), a.note or "–") for a in p.approvals
    ], widths=(18, 20, 20, 42))  # fmt: skip


def references_section(data: ComplianceData) -> str:
    if not data.references:
        return ("<div class='box warning'>No drift reference has been built for this model: "
                "drift is not watched (radwatch reference build).</div>")  # fmt: skip
    out = ["<p>Each reference is a frozen set of studies the detectors were fitted on; "
           "results and alerts name the reference they were judged against. Older references "
           "are kept.</p>"]  # fmt: skip
    for r in data.references:
        out.append(f"<div class='card'><h3>Reference #{r.id} "
                   f"({'in use' if r.active else 'replaced'})</h3>" + facts_table(_provenance(r))
                   + "</div>")  # fmt: skip
    return "".join(out)


def _provenance(r: Reference) -> list[tuple[str, str]]:
    if r.period_from and r.period_to:
        chosen = f"studies from {utc_text(r.period_from)} to {utc_text(r.period_to)} UTC"
    else:
        chosen = f"the model's first {r.first_n:,} studies" if r.first_n else "–"
    artifact = (f"{'data (manifest and arrays)' if r.artifact_format == 'manifest+npz' else r.artifact_format}, "
                f"SHA-256 {r.artifact_sha256}" if r.artifact_format else "none stored")  # fmt: skip
    return [
        ("Built", f"{utc_text(r.built_at)} UTC by {r.built_by}"),
        ("Studies", f"{chosen}; {r.n_events:,} in all ({r.n_fit:,} to fit, {r.n_holdout:,} "
                    f"held out to measure false alarms); last study {utc_text(r.last_occurred_at)} "
                    "UTC, detection starts after it"),
        ("Strata", readable(r.strata_counts)),
        ("Content hash (SHA-256 of the studies)", r.content_hash),
        ("Fitted detectors (artifact)", artifact),
        ("Image encoder", r.embedder or "none"),
        ("Detector settings fingerprint", r.detector_fingerprint),
    ]  # fmt: skip


def detectors_section(data: ComplianceData) -> str:
    if not data.fits:
        return "<p>No detector has been fitted: no reference is built.</p>"
    out = ["<p>One line per detector and reference: the strata it is fitted for, the "
           "reference size, and the false-alarm rate measured on held-out reference windows "
           "(no shift by construction; whole model). Every fit is listed in appendix A, the "
           "settings in appendix B.</p>"]  # fmt: skip
    rows = []
    for (ref, det), fits in _families(data.fits).items():
        whole = next((f for f in fits if f.stratum_kind == "all"), None)
        sizes = [f.n_reference for f in fits]
        far = (f"{whole.false_alarm_rate:.1%} of {whole.calibration_windows} windows"
               if whole and whole.false_alarm_rate is not None and whole.calibration_windows
               else "–")  # fmt: skip
        rows.append((f"#{ref}", detector_name(det), signal_name(fits[0].signal),
                     f"{len(fits)}", f"{min(sizes):,}–{max(sizes):,}" if len(fits) > 1
                     else f"{sizes[0]:,}", far))  # fmt: skip
    out.append(fixed_table(("Ref.", "Detector", "Signal", "Strata", "Reference studies",
                       "False alarms"), rows, widths=(7, 27, 28, 9, 14, 15)))  # fmt: skip
    return "".join(out)


def _families(fits: Sequence[DetectorFit]) -> dict[tuple[int, str], list[DetectorFit]]:
    out: dict[tuple[int, str], list[DetectorFit]] = {}
    for f in fits:
        out.setdefault((f.reference_id, f.detector), []).append(f)
    return out


def workflow_section(data: ComplianceData) -> str:
    out = ["<p>Who acknowledged and resolved each incident and alert, when, and their note, as "
           "recorded (each step is also a row of the audit trail). An alert or incident is "
           "of the period when it was active at some time in it, or when the data it "
           "describes (onset to last window) lies in it.</p>"]  # fmt: skip
    if not data.incidents and not data.alerts:
        return out[0] + "<p>No incident and no alert in this period.</p>"
    by_incident: dict[int | None, list[AlertRow]] = {}
    for a in data.alerts:
        by_incident.setdefault(a.incident_id, []).append(a)
    for i in data.incidents:
        out.append(_incident_card(i, by_incident.get(i.id, [])))
    shown = data.alerts[:MAX_ALERTS]
    out.append("<h3>Alerts</h3>")
    if len(data.alerts) > len(shown):
        out.append(f"<div class='box warning'>Showing {len(shown)} of {len(data.alerts)} "
                   "alerts, oldest first; the full list: <code>radwatch audit export --format "
                   f"csv --from {data.start:%Y-%m-%dT%H:%M:%SZ} --to "
                   f"{data.end:%Y-%m-%dT%H:%M:%SZ} --out audit.csv</code>.</div>")  # fmt: skip
    out.append(fixed_table(("Alert", "Opened", "Acknowledged", "Resolved"), [
        (f"<b>#{a.id}</b> {esc(signal_name(a.signal))}<br>{esc(stratum(a.stratum_kind, a.stratum_value))}"
         f"<br><span class='muted small'>{esc(a.state)}; onset {esc(when_text(a.onset))}"
         + (f"; incident #{a.incident_id}" if a.incident_id else "") + "</span>",
         esc(f"{utc_text(a.opened_at)}"),
         _step(a.acknowledged_by, a.acknowledged_at, a.acknowledged_note),
         _step(a.resolved_by, a.resolved_at, a.resolved_note))
        for a in shown], raw=True, widths=(34, 16, 25, 25)))  # fmt: skip
    return "".join(out)


def _incident_card(i: IncidentRow, alerts: Sequence[AlertRow]) -> str:
    title = SHIFT_TITLES.get(i.shift_type, i.shift_type)
    steps = [(utc_text(i.opened_at), i.opened_by or "–", "Opened", f"onset {when_text(i.onset)}")]
    if i.acknowledged_at:
        steps.append((utc_text(i.acknowledged_at), i.acknowledged_by or "–", "Acknowledged",
                      i.acknowledged_note or "–"))  # fmt: skip
    if i.decided_at:
        steps.append((utc_text(i.decided_at), i.decided_by or "–",
                      f"Decided: {'suspend use' if i.decision == 'suspend' else 'continue use'}",
                      i.decision_reason or "–"))  # fmt: skip
    if i.resolved_at:
        steps.append((utc_text(i.resolved_at), i.resolved_by or "–", "Resolved",
                      i.resolved_note or "–"))  # fmt: skip
    facts = [("Where", stratum(i.root_cause_kind, i.root_cause_value)), ("Statement", i.summary),
             ("Recommended action", i.recommended_action),
             ("Under the plan", f"{title}, clause {i.plan_clause or '–'} of plan version "
                                f"{i.plan_version or '–'}"),
             ("Alerts", ", ".join(f"#{a.id} {a.signal.replace('_', ' ')} at "
                                  f"{stratum(a.stratum_kind, a.stratum_value)}" for a in alerts)
              or "none in this period")]  # fmt: skip
    if i.stop_rule:
        facts.append(("Stop rule", f"{i.stop_rule}: suspend use recommended; " + (
            f"decided {i.decision} by {i.decided_by}" if i.decision else "NO DECISION YET")))  # fmt: skip
    return (f"<div class='card'><h3>Incident #{i.id} — {esc(title)} ({esc(i.state)})</h3>"
            + facts_table(facts) + fixed_table(("When (UTC)", "Who", "What", "Note"), steps,
                                     widths=(21, 17, 22, 40)) + "</div>")  # fmt: skip


def _step(by: str | None, at: datetime | None, note: str | None) -> str:
    if at is None:
        return "–"
    return f"{esc(by or '–')}, {esc(utc_text(at))}<br><span class='small'>{esc(note or '–')}</span>"


def decisions_section(data: ComplianceData) -> str:
    out = ["<p>Decisions people took under the monitoring plan: plan approvals and the "
           "decisions on incidents whose stop rule recommended suspending use (EU AI Act "
           "Art. 26(5)).</p>"]  # fmt: skip
    rows = [(utc_text(a.approved_at), a.approved_by, f"Plan version {a.version} approved",
             a.note or "–") for a in data.plan.approvals
            if data.start <= a.approved_at < data.end]  # fmt: skip
    for i in data.incidents:
        if i.stop_rule and i.decided_at:
            what = "suspend use" if i.decision == "suspend" else "continue use"
            rows.append((utc_text(i.decided_at), i.decided_by or "–",
                         f"Incident #{i.id}, stop rule {i.stop_rule}: {what}",
                         i.decision_reason or "–"))  # fmt: skip
        elif i.stop_rule:
            rows.append(("–", "nobody yet", f"Incident #{i.id}, stop rule {i.stop_rule}: "
                         "awaiting a decision", "radwatch incidents decide"))  # fmt: skip
    if not rows:
        return out[0] + "<p>No decision was recorded in this period.</p>"
    rows.sort(key=lambda r: r[0])
    return out[0] + fixed_table(("When (UTC)", "Who", "Decision", "Reason"), rows,
                           widths=(18, 18, 30, 34))  # fmt: skip


def audit_section(data: ComplianceData) -> str:
    v, a = data.verification, data.audit
    facts = [
        ("Rows in the trail", f"{v.rows:,} (seq 1 to {v.last_seq:,})"),
        ("Signed checkpoints", f"{v.checkpoints}, covering rows 1 to {v.checkpointed_through:,}"
         if v.checkpoints else "none"),
        ("Key the signatures were checked with", v.key_id or "none (no trusted public key)"),
        ("Verification", v.summary()),
    ]  # fmt: skip
    facts += [(f"Finding at seq {f.seq}", f"{f.problem}: {f.message}") for f in v.findings]
    counts = (fixed_table(("Recorded action", "Rows"), [
        (action_name(action), f"{n:,}") for action, n in a.by_action], widths=(80, 20))
        if a.by_action else "<p>No row naming this model was recorded in this period.</p>")  # fmt: skip
    return (audit_statement(v) + facts_table(facts)
            + f"<h3>Rows recorded in the period naming this model: {a.rows_in_period:,}</h3>"
            + counts + "<p class='muted'>The rows themselves, for an inspector: <code>radwatch "
            f"audit export --format csv --from {data.start:%Y-%m-%dT%H:%M:%SZ} --to "
            f"{data.end:%Y-%m-%dT%H:%M:%SZ} --out audit.csv</code> (or <code>--format "
            "fhir</code>); <code>radwatch audit verify</code> re-checks the trail.</p>")  # fmt: skip


def sign_off() -> str:
    return ("<p>By signing, each person confirms they have read this report and the decisions "
            "it records.</p><table class='sign'><colgroup><col style='width:30%'>"
            "<col style='width:22%'><col style='width:30%'><col style='width:18%'></colgroup>"
            "<tr><th>Role</th><th>Name</th><th>Signature</th><th>Date</th></tr>"
            + "".join(f"<tr><td>{esc(role)}</td><td></td><td></td><td></td></tr>"
                      for role in SIGN_OFF) + "</table>")  # fmt: skip


def fits_appendix(data: ComplianceData) -> str:
    if not data.fits:
        return "<p>No detector has been fitted.</p>"
    out = [f"<p>{len(data.fits)} fitted detectors, by reference, signal and stratum.</p>"]
    out.append(fixed_table(("Ref.", "Detector", "Stratum", "Reference studies", "False alarms"), [
        (f"#{f.reference_id}", detector_name(f.detector), stratum(f.stratum_kind,
         f.stratum_value), f"{f.n_reference:,}",
         f"{f.false_alarm_rate:.1%} of {f.calibration_windows}"
         if f.false_alarm_rate is not None and f.calibration_windows else "–")
        for f in data.fits], widths=(8, 38, 28, 12, 14)))  # fmt: skip
    return "".join(out)


def settings_appendix(data: ComplianceData) -> str:
    if not data.references:
        return "<p>No reference, so no detector settings.</p>"
    return "".join(
        f"<h3>Reference #{r.id}</h3>" + facts_table(
            [(k.replace("_", " ").capitalize(), readable(v)) for k, v in sorted(r.config.items())])
        for r in data.references)  # fmt: skip

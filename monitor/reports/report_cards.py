"""The model report's cards: one per incident of the period (or per alert no incident holds).

Between the report's data (monitor/reports/model_report.py `ReportData`: alerts, incidents,
their audit history, the studies) and its HTML. A card says what moved and where (root cause,
shift type, onset in event time), the evidence that is significant at the α the alert used
(monitor/alerts/lifecycle.py `significant_features`, the same rule `radwatch alerts list`
follows) with effect sizes, performance against the reference, example studies with captions
(score, site, scanner, why atypical), the recommended action and the ack/resolve history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from monitor.alerts import lifecycle
from monitor.alerts.incidents import Incident
from monitor.alerts.lifecycle import Alert
from monitor.reports import model_report
from monitor.reports.html_parts import Cell, esc, table
from monitor.reports.model_report import ReportData

EXAMPLES_PER_CARD = 4
PERFORMANCE_PREFIX = "performance"


@dataclass(frozen=True)
class Example:
    """One study shown as an example: its caption and, when readable, its thumbnail."""

    study: str
    caption: tuple[str, ...]
    png: str | None


@dataclass(frozen=True)
class Examples:
    """Captioned studies by pseudonym: the alerts' most atypical ones and the period's."""

    by_study: Mapping[str, Example]
    period: tuple[str, ...]  # the period's most atypical studies, most atypical first

    @classmethod
    def gather(cls, data: ReportData, key: bytes | None, images: Any) -> Examples:
        wanted: list[str] = []
        for a in data.alerts:
            for s in _atypical_ids(a):
                if s not in wanted:
                    wanted.append(s)
        top = model_report.atypical_studies(data)
        frame = data.frame
        rows = frame[frame["study"].isin(wanted)]
        rows = pd.concat([rows, top.drop(columns=["atypicality"])]).drop_duplicates("study")
        distance = model_report.atypicality(data, rows)
        pngs = model_report.thumbnails(data, [r for r in rows["image_ref"] if r], key, images)
        new_values = _new_values(data.alerts)
        by_study = {}
        for idx, row in rows.iterrows():
            by_study[str(row["study"])] = Example(
                str(row["study"]), _caption(data, row, distance.get(idx), new_values),
                pngs.get(row["image_ref"]) if row["image_ref"] else None)  # fmt: skip
        return cls(by_study, tuple(str(s) for s in top["study"]))


def _atypical_ids(a: Alert) -> list[str]:
    ids = list(a.details.get("atypical_ids") or [])
    latest = a.details.get("latest") or {}
    ids += [i for i in latest.get("atypical_ids") or [] if i not in ids]
    return [str(i) for i in ids]


def _new_values(alerts: Sequence[Alert]) -> dict[str, set[str]]:
    """Tag → values never seen in the reference, from the alerts' significant findings."""
    out: dict[str, set[str]] = {}
    for a in alerts:
        for f in lifecycle.significant_features(a.details):
            if f.get("new_values"):
                out.setdefault(str(f["feature"]), set()).update(str(v) for v in f["new_values"])
    return out


def _caption(data: ReportData, row: pd.Series, distance: float | None,
             new_values: Mapping[str, set[str]]) -> tuple[str, ...]:  # fmt: skip
    f = data.findings[0] if data.findings else None
    lines = [f"study {row['study']}", f"{row['occurred_at']:%Y-%m-%d %H:%M} UTC"]
    if f:
        label = row.get(f"label_{f}")
        said = "no label" if pd.isna(label) else f"label {'positive' if label else 'negative'}"
        lines.append(f"{f} score {row[f'score_{f}']:.2f} ({said})")
    lines.append(f"site {row['site']} · scanner {row['scanner']}")
    why = [f"{tag} {row[tag]!r} never seen in the reference"
           for tag, values in new_values.items() if tag in row and str(row[tag]) in values]  # fmt: skip
    if distance is not None and pd.notna(distance):
        why.append(f"embedding {distance:.1f}× a typical reference study's distance")
    lines.append("why: " + ("; ".join(why) if why else "named by the detector as most atypical"))
    return tuple(lines)


def example_html(e: Example) -> str:
    img = f"<img alt='study {esc(e.study)}' src='data:image/png;base64,{e.png}'>" if e.png else ""
    return (f"<div class='example' data-study='{esc(e.study)}'>{img}"
            + "".join(f"<div>{esc(line)}</div>" for line in e.caption) + "</div>")  # fmt: skip


def atypical_html(data: ReportData, examples: Examples) -> str:
    shown = [examples.by_study[s] for s in examples.period if s in examples.by_study]
    if not shown:
        return "<p class='muted' id='thumbnails-none'>none (no embeddings in the period)</p>"
    lead = ("<p class='muted'>The period's studies farthest from the reference in the model's "
            "own embedding (standardised per dimension).</p>")  # fmt: skip
    return lead + "<div class='examples thumbs'>" + "".join(map(example_html, shown)) + "</div>"


# -- evidence --------------------------------------------------------------------------------


def _p(p: Any) -> str:
    return f"{float(p):.2g}" if isinstance(p, int | float) else "?"


def evidence_lines(a: Alert) -> list[str]:
    """What the alert's opening window showed, significant contributors only, with effects."""
    d = a.details
    if a.signal.startswith(PERFORMANCE_PREFIX):
        return _performance_lines(d)
    if a.signal == "online":
        stat, thr = d.get("statistic"), d.get("threshold")
        if isinstance(stat, int | float) and isinstance(thr, int | float):
            return [f"online detector statistic {stat:.2f} crossed its threshold {thr:.2f} "
                    f"(expected run time {d.get('expected_run_time', '?')} studies)"]  # fmt: skip
        return [f"online detector fired {d.get('online_firings_in_window', 1)} time(s)"]
    lines = []
    level = lifecycle.significance_level(d)
    for f in lifecycle.significant_features(d):
        lines.append(f"{f['summary']} — adj. p {_p(f['adjusted_p'])}, effect "
                     f"{float(f['effect_size']):.2f} ({_effect_name(str(f.get('test')))})")  # fmt: skip
    features = {f.get("feature") for f in d.get("top_features", [])}
    for t in d.get("tests", []):
        p = t.get("adjusted_p")
        if not isinstance(p, int | float) or p >= level:
            continue
        if t.get("summary") or not features:
            what = t.get("summary") or t.get("detector")
            lines.append(f"{t['detector']}: {what} — adj. p {_p(p)}, effect "
                         f"{float(t.get('effect_size') or 0):.2f}")  # fmt: skip
    if not lines:
        lines.append("no single contributor significant")
    score = d.get("drift_score")
    if isinstance(score, int | float):
        lines.append(f"unified drift score {score:.1f} (about 0 when nothing moved)")
    return lines


def _effect_name(test: str) -> str:
    return {"ks": "KS D", "chi2": "Cramér's V", "new_value": "share never seen"}.get(test, test)


def _estimate(e: Any) -> str:
    if not isinstance(e, Mapping) or e.get("value") is None:
        return "–"
    lo, hi = e.get("lower"), e.get("upper")
    interval = f" [{lo:.2f}–{hi:.2f}]" if lo is not None and hi is not None else ""
    return f"{e['value']:.2f}{interval}"


def _performance_lines(d: Mapping[str, Any]) -> list[str]:
    lines = []
    for finding in d.get("degraded_findings") or list(d.get("findings", {})):
        cell = d.get("findings", {}).get(finding) or {}
        worst = cell.get("worst_test") or {}
        head = f"{finding}: AUROC {_estimate(cell.get('auroc'))}"
        if isinstance(cell.get("reference_auroc"), int | float):
            head += f" vs {cell['reference_auroc']:.2f} in the reference"
        lines.append(head + f", sensitivity {_estimate(cell.get('sensitivity'))}, specificity "
                     f"{_estimate(cell.get('specificity'))} on {cell.get('n_labelled', '?')} "
                     "labelled studies")  # fmt: skip
        if worst:
            lines.append(f"largest drop: {worst.get('metric')} {worst.get('window', 0):.2f} vs "
                         f"{worst.get('reference', 0):.2f} (difference "
                         f"{worst.get('difference', 0):+.2f}, p {_p(worst.get('p_value'))})")  # fmt: skip
        if isinstance(cell.get("estimated_auroc"), Mapping):
            lines.append(f"estimated AUROC without labels {_estimate(cell['estimated_auroc'])}"
                         + ("" if cell.get("estimate_reliable") else " (estimate flagged "
                            "unreliable: the score no longer means what it did)"))  # fmt: skip
    return lines or ["performance degraded (no detail stored)"]


# -- cards -----------------------------------------------------------------------------------


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M} UTC" if t else "unknown"


def _alert_rows(data: ReportData, alerts: Sequence[Alert]) -> str:
    rows: list[list[Cell | str]] = []
    for a in alerts:
        first, last = data.span(a)
        rows.append([f"#{a.id}", a.signal, f"{a.stratum_kind}={a.stratum_value}", a.state,
                     _when(a.onset) if a.onset else f"first window {_when(first)}",
                     _when(last), Cell("\n".join(evidence_lines(a)), left=True)])  # fmt: skip
    headers = ["alert", "signal", "stratum", "state", "onset (event time)", "last window",
               "significant evidence (effect size)"]  # fmt: skip
    return table(headers, rows, left=3).replace("\n", "<br>")


def _history(data: ReportData, entities: Sequence[tuple[str, int]]) -> str:
    h = data.history
    if h.empty:
        return "<p class='muted'>No workflow actions recorded.</p>"
    keys = {(kind, str(i)) for kind, i in entities}
    mine = h[[(t, e) in keys for t, e in zip(h["entity_type"], h["entity_id"], strict=True)]]
    if mine.empty:
        return "<p class='muted'>No workflow actions recorded.</p>"
    rows = [[f"{r.recorded_at:%Y-%m-%d %H:%M} UTC", r.actor, f"{r.action} {r.entity_id}",
             r.reason or ""] for r in mine.itertuples()]  # fmt: skip
    return ("<details><summary>History (audit trail, wall-clock time): "
            f"{len(rows)} action(s), the last by {esc(mine['actor'].iloc[-1])}</summary>"
            + table(["recorded", "who", "what", "note"], rows, left=4) + "</details>")  # fmt: skip


def _examples(alerts: Sequence[Alert], examples: Examples) -> str:
    picked: list[Example] = []
    for a in alerts:
        for s in _atypical_ids(a):
            e = examples.by_study.get(s)
            if e is not None and e not in picked:
                picked.append(e)
    picked = picked[:EXAMPLES_PER_CARD]
    if not picked:
        return ""
    return ("<div class='muted'>Examples: the studies the detectors found most atypical</div>"
            "<div class='examples'>" + "".join(map(example_html, picked)) + "</div>")  # fmt: skip


def harmed(alerts: Sequence[Alert]) -> bool:
    return any(a.signal.startswith(PERFORMANCE_PREFIX) for a in alerts)


def incident_card(data: ReportData, i: Incident, examples: Examples) -> str:
    alerts = data.alerts_of(i)
    badge = "<span class='badge harm'>performance dropped</span>" if harmed(alerts) else ""
    plan = ""
    if i.stop_rule and not i.decision:
        plan = (f"<p><b>Suspend use recommended:</b> stop rule {esc(i.stop_rule)} holds; record "
                f"the decision with <code>radwatch incidents decide {i.id}</code>.</p>")  # fmt: skip
    elif i.stop_rule:
        plan = (f"<p>Stop rule {esc(i.stop_rule)}: {esc(i.decision)} (decided by "
                f"{esc(i.decided_by)}: {esc(i.decision_reason)}).</p>")  # fmt: skip
    entities = [("incident", i.id), *(("alert", a.id) for a in alerts)]
    return (
        f"<div class='card incident' id='incident-{i.id}' data-incident='{i.id}' "
        f"data-alerts='{' '.join(str(a.id) for a in alerts)}'>"
        f"<h3>Incident #{i.id}: {esc(i.root_cause)} · {esc(i.shift_type)} shift"
        f"<span class='badge {esc(i.state)}'>{esc(i.state)}</span>{badge}</h3>"
        f"<div class='meta'>onset {_when(i.onset)} (event time) · {len(alerts)} of its "
        f"{len(i.alerts)} alert(s) in this period · "
        f"plan clause {esc(i.plan_clause or '–')}</div>"
        f"<p class='why'>{esc(i.summary)}</p>"
        f"<div class='action'><b>Recommended:</b> {esc(i.recommended_action)}</div>{plan}"
        + _alert_rows(data, alerts)
        + _examples(alerts, examples)
        + _history(data, entities)
        + "</div>"
    )


def alert_card(data: ReportData, a: Alert, examples: Examples) -> str:
    badge = "<span class='badge harm'>performance dropped</span>" if harmed([a]) else ""
    return (
        f"<div class='card alert' id='alert-{a.id}' data-alerts='{a.id}'>"
        f"<h3>Alert #{a.id}: {esc(a.signal)} at {esc(a.stratum_kind)}={esc(a.stratum_value)}"
        f"<span class='badge {esc(a.state)}'>{esc(a.state)}</span>{badge}</h3>"
        f"<div class='meta'>onset {_when(data.span(a)[0])} (event time)</div>"
        f"<div class='action'><b>Recommended:</b> review the evidence and the examples, then "
        f"acknowledge: <code>radwatch alerts ack {a.id} --by WHO --note TEXT</code></div>"
        + _alert_rows(data, [a])
        + _examples([a], examples)
        + _history(data, [("alert", a.id)])
        + "</div>"
    )


def cards_html(data: ReportData, examples: Examples) -> str:
    """Incidents first (active before resolved, newest onset first), then loose alerts."""
    if not data.incidents and not data.alerts:
        return "<h2>Incidents</h2><p class='muted' id='cards-none'>No incident or alert in this " \
               "period.</p>"  # fmt: skip
    order = sorted(data.incidents, key=lambda i: (i.state == "resolved", -(
        i.onset.timestamp() if i.onset else 0)))  # fmt: skip
    parts = [f"<h2>Incidents ({len(data.incidents)}) and their alerts ({len(data.alerts)})</h2>"]
    parts += [incident_card(data, i, examples) for i in order]
    loose = data.loose_alerts
    if loose:
        parts.append("<h3>Alerts in no incident</h3>")
        parts += [alert_card(data, a, examples) for a in loose]
    return "\n".join(parts)

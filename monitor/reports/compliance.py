"""Post-market surveillance report (`radwatch compliance-report`), one self-contained HTML file.

Reads, for one model and period: inferences (model versions in use), other layers' tables
for references, detector configurations, alerts and performance — found through
information_schema, since their schemas evolve independently ('not available' otherwise) —
the audit trail's own record of decisions, and the result of verifying the trail.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from monitor.audit.trail import radwatch_version
from monitor.audit.verify import VerifyResult

MAX_ROWS = 500  # per table; the report says when it cut a table short
SKIP_TYPES = ("ARRAY", "bytea", "USER-DEFINED")  # embeddings, raw bytes, vectors: not for people
# Bookkeeping tables (membership lists, scheduler cursors, run counters): not for the report.
SKIP_SUFFIXES = ("_members", "_cursors", "_streaks", "_state", "_online_events")
TIME_PREFERENCE = ("window_end", "opened_at", "created_at", "built_at", "fitted_at",
                   "decided_at", "recorded_at", "computed_at", "occurred_at", "updated_at")  # fmt: skip


@dataclass(frozen=True)
class Section:
    title: str
    note: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    available: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, data_type)

    def has(self, column: str) -> bool:
        return any(c == column for c, _ in self.columns)

    def time_column(self) -> str | None:
        timestamps = [c for c, t in self.columns if t.startswith("timestamp")]
        for name in TIME_PREFERENCE:
            if name in timestamps:
                return name
        return timestamps[0] if timestamps else None


def tables_like(conn: psycopg.Connection, *patterns: str) -> list[Table]:
    """Tables and views of the current schema whose name matches a LIKE pattern."""
    names = [
        str(r[0])
        for r in conn.execute(
            """SELECT table_name FROM information_schema.tables
               WHERE table_schema = current_schema() AND table_name LIKE ANY(%s)
                 AND table_name NOT LIKE 'audit%%' ORDER BY table_name""",
            (list(patterns),),
        ).fetchall()
    ]
    found = []
    for name in (n for n in names if not n.endswith(SKIP_SUFFIXES)):
        cols = conn.execute(
            """SELECT column_name, data_type FROM information_schema.columns
               WHERE table_schema = current_schema() AND table_name = %s
               ORDER BY ordinal_position""",
            (name,),
        ).fetchall()
        found.append(Table(name, tuple((str(c), str(t)) for c, t in cols)))
    return found


def _table_section(
    conn: psycopg.Connection, title: str, table: Table, model: str,
    start: datetime, end: datetime, *, in_period: bool,
) -> Section:  # fmt: skip
    shown = [c for c, t in table.columns if t not in SKIP_TYPES]
    where: list[sql.Composable] = []
    params: list[Any] = []
    notes = [f"from table {table.name}"]
    model_col = next((c for c in ("model_name", "model") if table.has(c)), None)
    references = _references_table(conn)
    if model_col:
        where.append(sql.SQL("{} = %s").format(sql.Identifier(model_col)))
        params.append(model)
        notes.append(f"{model_col} = {model}")
    elif table.has("reference_id") and references:
        # Detector fits and artefacts name their reference, which names the model.
        where.append(sql.SQL("reference_id IN (SELECT id FROM {} WHERE model_name = %s)").format(
            sql.Identifier(references)))  # fmt: skip
        params.append(model)
        notes.append(f"references of model {model}")
    else:
        notes.append("table has no model column: all rows")
    time_col = table.time_column()
    if in_period and table.has("window_start") and table.has("window_end"):
        where.append(sql.SQL("window_start < %s AND window_end >= %s"))
        params += [end, start]
        notes.append("windows overlapping the period")
    elif in_period and table.has("opened_at") and table.has("resolved_at"):
        where.append(sql.SQL("opened_at < %s AND (resolved_at IS NULL OR resolved_at >= %s)"))
        params += [end, start]
        notes.append("open at some time in the period")
    elif in_period and time_col:
        where.append(sql.SQL("{} >= %s AND {} < %s").format(
            sql.Identifier(time_col), sql.Identifier(time_col)))  # fmt: skip
        params += [start, end]
        notes.append(f"{time_col} within the period")
    query = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in shown),
        sql.Identifier(table.name),
        sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where) if where else sql.SQL(""),
        sql.SQL(", ").join(sql.Identifier(c) for c in ([time_col] if time_col else shown[:1])),
        sql.Literal(MAX_ROWS + 1),
    )
    rows = conn.execute(query, params).fetchall()
    if len(rows) > MAX_ROWS:
        notes.append(f"first {MAX_ROWS} rows shown")
    return Section(title, "; ".join(notes), tuple(shown),
                   tuple(tuple(r) for r in rows[:MAX_ROWS]))  # fmt: skip


def _references_table(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        """SELECT table_name FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name LIKE '%reference%'
             AND column_name = 'model_name' ORDER BY table_name LIMIT 1"""
    ).fetchone()
    return str(row[0]) if row else None


def _discovered(
    conn: psycopg.Connection, title: str, patterns: Sequence[str], model: str,
    start: datetime, end: datetime, *, in_period: bool,
) -> list[Section]:  # fmt: skip
    tables = tables_like(conn, *patterns)
    if not tables:
        return [Section(title, "not available: no table matching " + ", ".join(patterns)
                        + " in this database", (), (), available=False)]  # fmt: skip
    return [
        _table_section(conn, f"{title}: {t.name}", t, model, start, end, in_period=in_period)
        for t in tables
    ]


def _model_versions(
    conn: psycopg.Connection, model: str, start: datetime, end: datetime
) -> Section:
    rows = conn.execute(
        """SELECT coalesce(model_version, '(none)'), coalesce(site, '(none)'), count(*),
                  min(occurred_at), max(occurred_at)
           FROM inferences WHERE model_name = %s AND occurred_at >= %s AND occurred_at < %s
           GROUP BY 1, 2 ORDER BY 1, 2""",
        (model, start, end),
    ).fetchall()
    return Section("Model versions in use", "inferences received in the period, by version and "
                   "site", ("model_version", "site", "inferences", "first", "last"),
                   tuple(tuple(r) for r in rows))  # fmt: skip


def _audit_decisions(conn: psycopg.Connection, model: str, start: datetime, end: datetime
                     ) -> list[Section]:  # fmt: skip
    match = """(refs->>'model' = %(m)s OR refs->>'model_name' = %(m)s
                OR detail->>'model' = %(m)s OR detail->>'model_name' = %(m)s
                OR entity_id = %(m)s)
               AND recorded_at >= %(s)s AND recorded_at < %(e)s"""
    params = {"m": model, "s": start, "e": end}
    counts = conn.execute(
        f"""SELECT action, outcome, count(*), min(seq), max(seq) FROM audit_events
            WHERE {match} GROUP BY 1, 2 ORDER BY 1, 2""",
        params,
    ).fetchall()
    alerts = conn.execute(
        f"""SELECT seq, recorded_at, actor, action, entity_id, outcome, reason, detail
            FROM audit_events WHERE {match}
              AND (entity_type LIKE 'alert%%' OR action LIKE 'alert%%')
            ORDER BY seq LIMIT {MAX_ROWS}""",
        params,
    ).fetchall()
    return [
        Section("Decisions recorded in the audit trail", "audit rows naming this model (refs or "
                "detail 'model'/'model_name', or the entity id), by action",
                ("action", "outcome", "rows", "first seq", "last seq"),
                tuple(tuple(r) for r in counts)),
        Section("Alert workflow in the audit trail", "opened, notified, acknowledged and resolved "
                "(who, note), as recorded",
                ("seq", "recorded_at", "actor", "action", "alert", "outcome", "reason", "detail"),
                tuple(tuple(r) for r in alerts)),
    ]  # fmt: skip


def build_sections(
    conn: psycopg.Connection, model: str, start: datetime, end: datetime
) -> list[Section]:
    sections = [_model_versions(conn, model, start, end)]
    sections += _discovered(conn, "References", ["%reference%"], model, start, end,
                            in_period=False)  # fmt: skip
    sections += _discovered(conn, "Detector configurations", ["%detector%", "%embedder%"], model,
                            start, end, in_period=False)  # fmt: skip
    sections += _discovered(conn, "Alerts", ["%alert%"], model, start, end, in_period=True)
    sections += _discovered(conn, "Performance with intervals by subgroup",
                            ["performance_results", "%performance%"], model, start, end,
                            in_period=True)  # fmt: skip
    sections += _audit_decisions(conn, model, start, end)
    return sections


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        text = json.dumps(value, sort_keys=True, default=str)
        return text if len(text) <= 300 else text[:300] + "…"
    return str(value)


def render(
    sections: Sequence[Section], verification: VerifyResult, *, model: str,
    start: datetime, end: datetime,
) -> str:  # fmt: skip
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>radwatch compliance report: {html.escape(model)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "font-size:.85em}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
        ".bad{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}"
        ".note{color:#555}</style></head><body>",
        f"<h1>Compliance report: {html.escape(model)}</h1>",
        f"<p>Period {start.isoformat()} to {end.isoformat()} (end exclusive, UTC). Generated "
        f"{datetime.now(UTC).isoformat(timespec='seconds')} by radwatch {radwatch_version()}."
        " Identifiers are pseudonyms; no PHI is held.</p>",
        "<h2>Audit trail verification</h2>",
        f"<p class='{'ok' if verification.ok else 'bad'}'>{html.escape(verification.summary())}"
        "</p>",
    ]
    for finding in verification.findings:
        out.append(f"<p class='bad'>{html.escape(finding.line())}</p>")
    for section in sections:
        out.append(f"<h2>{html.escape(section.title)}</h2>")
        out.append(f"<p class='note'>{html.escape(section.note)}</p>")
        if not section.available:
            continue
        if not section.rows:
            out.append("<p>none in this period</p>")
            continue
        out.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in section.columns)
                   + "</tr>")  # fmt: skip
        for row in section.rows:
            out.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row)
                       + "</tr>")  # fmt: skip
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)

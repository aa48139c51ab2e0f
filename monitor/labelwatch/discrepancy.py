"""The AI-vs-report discrepancy signal: load, compute, store (issue 17).

Between PostgreSQL and the metrics: each model's inferences joined to their study's current
read (the `current_labels` view of migration 0005, which resolves labels by accession through
migration 0013), each finding with both a score, a threshold and a label becoming one
`detectors.performance.discrepancy.Call` (the AI's call is score ≥ the event's threshold for
that finding); the pure computation (detectors/performance/discrepancy.py) tests each window's
rate per finding and stratum (whole model, site, scanner as Manufacturer +
ManufacturerModelName from the stored DICOM attributes, model version) against the reference
period's, and the results are upserted into `discrepancy_results` (migration 0014), which
`radwatch metrics` exposes (monitor/metrics/labeler_section.py).

The performance pass (monitor/performance/watch.py) runs this for every model and, where
the plan in force lists the `discrepancy` signal, feeds each complete window's flags to the
alert lifecycle (monitor/performance/observe.py: observe_discrepancy), so a discrepancy rise
opens an alert and joins the model's incidents like any performance signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

import psycopg

from detectors.performance.discrepancy import (
    Call,
    DiscrepancyError,
    DiscrepancyReport,
    DiscrepancyTest,
    evaluate,
)
from monitor.audit import trail

ACTOR = "radwatch.discrepancy"


@dataclass(frozen=True)
class TimedCall:
    occurred_at: datetime
    call: Call


@dataclass(frozen=True)
class DiscrepancyRun:
    """A pass's report and each window's end in event time (its last call's), in order."""

    report: DiscrepancyReport
    window_ends: tuple[datetime, ...]


@dataclass(frozen=True)
class DiscrepancyConfig:
    reference_size: int = 1000  # labelled calls (study × finding) in the reference period
    window_size: int = 500
    alpha: float = 0.01
    min_expected: float = 5.0


def strata(dicom: dict[str, Any], site: str | None, version: str | None) -> dict[str, str]:
    vendor = dicom.get("Manufacturer") or "unknown"
    scanner = dicom.get("ManufacturerModelName") or "unknown"
    return {"site": site or "unknown", "scanner": f"{vendor} {scanner}",
            "model_version": version or "unknown"}  # fmt: skip


def calls_from_rows(rows: Sequence[tuple[Any, ...]]) -> list[TimedCall]:
    """(occurred_at, site, model_version, dicom, scores, thresholds, labels) rows → calls, one
    per finding with a numeric score, a numeric threshold and a 0/1 label."""
    out = []
    for at, site, version, dicom, scores, thresholds, labels in rows:
        where = strata(dicom or {}, site, version)
        for finding in sorted(labels or {}):
            score, cut = (scores or {}).get(finding), (thresholds or {}).get(finding)
            if not (_number(score) and _number(cut)) or labels[finding] not in (0, 1):
                continue
            ai = float(score) >= float(cut)
            out.append(TimedCall(at, Call(ai, labels[finding] == 1, where, finding)))
    return out


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def load_calls(conn: psycopg.Connection, model: str) -> list[TimedCall]:
    rows = conn.execute(
        """SELECT i.occurred_at, i.site, i.model_version, i.dicom, i.scores, i.thresholds,
                  c.labels
           FROM inferences i
           JOIN current_labels c
             ON c.model_name = i.model_name AND c.study_pseudo = i.study_pseudo
           WHERE i.model_name = %s
           ORDER BY i.occurred_at, i.event_id""",
        (model,),
    ).fetchall()
    return calls_from_rows(rows)


def _rows(model: str, report: DiscrepancyReport, calls: Sequence[TimedCall]) -> list[tuple]:
    def row(kind: str, index: int, first: int, size: int, t: DiscrepancyTest) -> tuple:
        start, end = calls[first].occurred_at, calls[first + size - 1].occurred_at
        w, r = t.window, t.reference
        return (model, t.finding, kind, index, start, end, t.stratum_kind, t.stratum_value,
                t.status.value, w.n, w.discrepant, w.ai_only, w.report_only, w.rate, r.n,
                r.rate, t.z, t.p_value, t.level, t.flagged)  # fmt: skip

    out = [row("reference", 0, 0, report.reference_size, t) for t in report.reference]
    kind = f"count:{report.window_size}"
    for w in report.windows:
        out += [row(kind, w.index, w.first, w.size, t) for t in w.tests]
    return out


def store(conn: psycopg.Connection, model: str, report: DiscrepancyReport,
          calls: Sequence[TimedCall]) -> int:  # fmt: skip
    rows = _rows(model, report, calls)
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO discrepancy_results (model_name, finding, window_kind, window_index,
                   window_start, window_end, stratum_kind, stratum_value, status, n,
                   n_discrepant, n_ai_only, n_report_only, rate, reference_n, reference_rate,
                   z, p_value, level, flagged)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,
                       %s, %s)
               ON CONFLICT (model_name, finding, window_kind, window_index, stratum_kind,
                            stratum_value)
               DO UPDATE SET window_start = EXCLUDED.window_start,
                   window_end = EXCLUDED.window_end, status = EXCLUDED.status,
                   n = EXCLUDED.n, n_discrepant = EXCLUDED.n_discrepant,
                   n_ai_only = EXCLUDED.n_ai_only, n_report_only = EXCLUDED.n_report_only,
                   rate = EXCLUDED.rate, reference_n = EXCLUDED.reference_n,
                   reference_rate = EXCLUDED.reference_rate, z = EXCLUDED.z,
                   p_value = EXCLUDED.p_value, level = EXCLUDED.level,
                   flagged = EXCLUDED.flagged, computed_at = now()""",
            rows,
        )
    return len(rows)


def run(conn: psycopg.Connection, model: str, config: DiscrepancyConfig | None = None, *,
        actor: str = ACTOR) -> DiscrepancyRun | None:  # fmt: skip
    """One model's discrepancy pass: None (nothing stored) while fewer labelled calls than
    the reference needs; else the report, stored and audited."""
    config = config or DiscrepancyConfig()
    calls = load_calls(conn, model)
    try:
        report = evaluate([c.call for c in calls], reference_size=config.reference_size,
                          window_size=config.window_size, alpha=config.alpha,
                          min_expected=config.min_expected)  # fmt: skip
    except DiscrepancyError:
        return None
    stored = store(conn, model, report, calls)
    flagged = sorted({f"{t.stratum_kind}={t.stratum_value}" for w in report.windows
                      for t in w.flagged})  # fmt: skip
    trail.record(conn, actor=actor, action="discrepancy.evaluate", entity_type="model",
                 entity_id=model, detail={"signal": "discrepancy", "rows": stored,
                                          "windows": len(report.windows),
                                          "alpha": config.alpha, "flagged": flagged})  # fmt: skip
    conn.commit()
    ends = tuple(calls[w.first + w.size - 1].occurred_at for w in report.windows)
    return DiscrepancyRun(report, ends)

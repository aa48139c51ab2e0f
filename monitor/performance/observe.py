"""Feeding the performance watch's decisions to the alert lifecycle, once per window.

Between the watch (monitor/performance/watch.py evaluates, stores and calls these) and the
alert lifecycle (monitor/alerts/lifecycle.py): each completed window's degradation decision
per stratum (`performance`), the CUSUM channel's decided spans (`performance_cusum`,
monitor/performance/sequential.py) and the plan's metric stop rules (`performance_floor`,
monitor/performance/floors.py) are recorded in performance_observations, audited, and fed
to the lifecycle; a window of a kind already judged is never judged again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from detectors.drift.results import Status
from detectors.performance.discrepancy import DiscrepancyTest
from monitor.alerts import governance, lifecycle
from monitor.audit import trail
from monitor.labelwatch.discrepancy import DiscrepancyRun
from monitor.performance import floors, sequential
from monitor.performance.evaluation import ALL, ModelReport, Window, window_decisions
from monitor.plan.document import StopRule

ACTOR = "radwatch.performance"
SIGNAL = "performance"
DISCREPANCY = "discrepancy"

AlertObserver = Callable[..., Any]


def observe_alerts(
    conn: psycopg.Connection,
    report: ModelReport,
    *,
    actor: str = ACTOR,
    observer: AlertObserver | None = None,
    open_after: int = 2,
) -> list[Any]:
    """Feed each newly decidable window, in order, to the alert lifecycle; once per window;
    an alert opens after `open_after` consecutive degraded windows (the budget's)."""
    policy = lifecycle.AlertPolicy(open_after=open_after)
    changes = []
    for wr, (kind, value), firing, details in window_decisions(report):
        w = wr.window
        change = observe_window(conn, report.model, (kind, value), w.kind, w.index, w.end, firing,
                          details, signal=SIGNAL, actor=actor, observer=observer,
                          policy=policy)  # fmt: skip
        if change is not None:
            changes.append(change)
    return changes


def observe_cusum(
    conn: psycopg.Connection,
    model: str,
    seq: sequential.SequentialReport,
    windows: Sequence[Window],
    *,
    actor: str = ACTOR,
    observer: AlertObserver | None = None,
) -> list[Any]:
    """Feed the CUSUM channel's decided spans to the lifecycle as `performance_cusum` (whole
    model), once per span. A CUSUM alarm is already its own persistence (its limit is set for
    the ARL0), so one firing span opens the alert (`immediate`); quiet spans resolve it by
    the usual hysteresis. The alert's onset is the chart's last reset before it crossed."""
    changes = []
    for span in sequential.decisions(seq, windows):
        change = observe_window(conn, model, ALL, sequential.WINDOW_KIND, span.index, span.end,
                          span.firing, span.details, signal=sequential.SIGNAL, actor=actor,
                          observer=observer, immediate=True,
                          enrich=partial(dict, onset=span.onset) if span.onset else None)  # fmt: skip
        if change is not None:
            changes.append(change)
    return changes


def observe_discrepancy(
    conn: psycopg.Connection,
    model: str,
    run: DiscrepancyRun,
    *,
    actor: str = ACTOR,
    observer: AlertObserver | None = None,
    open_after: int = 2,
) -> list[Any]:
    """Feed each complete discrepancy window's verdict per stratum (whole model, site, scanner,
    model version) to the lifecycle as `discrepancy`, once per window: firing when any of the
    stratum's findings is flagged (the window's tests share α by Bonferroni); a stratum too
    small to test neither fires nor resolves. The last, partial window waits to be complete."""
    policy = lifecycle.AlertPolicy(open_after=open_after)
    report, changes = run.report, []
    for window, end in zip(report.windows, run.window_ends, strict=True):
        if window.size < report.window_size:
            continue
        by_stratum: dict[tuple[str, str], list[DiscrepancyTest]] = {}
        for t in window.tests:
            if t.status is not Status.INSUFFICIENT_DATA:
                by_stratum.setdefault((t.stratum_kind, t.stratum_value), []).append(t)
        for stratum, tests in sorted(by_stratum.items()):
            flagged = [t for t in tests if t.flagged]
            details = _discrepancy_details(tests, flagged, report.alpha, report.window_size)
            change = observe_window(conn, model, stratum, f"discrepancy:{report.window_size}",
                                    window.index, end, bool(flagged), details,
                                    signal=DISCREPANCY, actor=actor, observer=observer,
                                    policy=policy)  # fmt: skip
            if change is not None:
                changes.append(change)
    return changes


def _discrepancy_details(
    tests: Sequence[DiscrepancyTest], flagged: Sequence[DiscrepancyTest], alpha: float, size: int
) -> dict[str, Any]:
    worst = min(flagged or tests, key=lambda t: t.p_value if t.p_value is not None else 1.0)
    finding = "all findings" if worst.finding == "*" else worst.finding
    return {
        "method": "discrepancy", "alpha": alpha, "window_size": size,
        "summary": f"{finding}: AI call and report disagree in {worst.window.rate:.1%} of "
                   f"{worst.window.n} studies vs {worst.reference.rate:.1%} in reference",
        "findings": {t.finding: {"rate": t.window.rate, "n": t.window.n,
                                 "reference_rate": t.reference.rate,
                                 "ai_only": t.window.ai_only, "report_only": t.window.report_only,
                                 "p_value": t.p_value, "level": t.level, "flagged": t.flagged}
                     for t in tests},
    }  # fmt: skip


def observe_window(
    conn: psycopg.Connection,
    model: str,
    stratum: tuple[str, str],
    window_kind: str,
    index: int,
    end: datetime,
    firing: bool,
    details: dict[str, Any],
    *,
    signal: str,
    actor: str,
    observer: AlertObserver | None,
    **extra: Any,
) -> Any:
    """One window's decision for one stratum: recorded, audited and fed to the lifecycle, unless
    a window of this kind ending no earlier was judged already (None then)."""
    observe = observer or lifecycle.observe
    kind, value = stratum
    with conn.transaction():
        # Once per window, by time: a rebuilt reference renumbers the windows after it,
        # so an index says nothing across rebuilds, but a window that ends no later than
        # one already judged was judged (and its alert fed) before.
        last = conn.execute(
            """SELECT max(window_end) FROM performance_observations
               WHERE model_name = %s AND stratum_kind = %s AND stratum_value = %s
                 AND window_kind = %s""",
            (model, kind, value, window_kind),
        ).fetchone()
        if last and last[0] is not None and last[0] >= end:
            return None
        details = lifecycle.audit_safe(details)  # jsonb rejects NaN
        conn.execute(
            """INSERT INTO performance_observations (model_name, stratum_kind, stratum_value,
                   window_kind, window_index, window_end, firing, details)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (model_name, stratum_kind, stratum_value, window_kind,
                            window_index)
               DO UPDATE SET window_end = EXCLUDED.window_end, firing = EXCLUDED.firing,
                   details = EXCLUDED.details, observed_at = now()""",
            (model, kind, value, window_kind, index, end, firing, Jsonb(details)),
        )
        trail.record(conn, actor=actor, action="performance.window",
                     entity_type="performance_window",
                     entity_id=f"{model}/{window_kind}/{index}/{kind}={value}",
                     outcome="degraded" if firing else "ok", refs={"model": model},
                     detail=details)  # fmt: skip
        return observe(conn, model=model, stratum_kind=kind, stratum_value=value,
                       signal=signal, firing=firing, details=details, window_end=end,
                       actor=actor, **extra)  # fmt: skip


def observe_floors(
    conn: psycopg.Connection,
    report: ModelReport,
    rules: Sequence[StopRule],
    *,
    actor: str = ACTOR,
    observer: AlertObserver | None = None,
) -> list[Any]:
    """Feed the plan's metric stop rules (e.g. specificity below 0.80 with 95% confidence) per
    completed window as `performance_floor` (whole model, at once: the rule is its own
    persistence); a window where one holds marks its incident "suspend use recommended"
    (monitor/alerts/governance.py)."""
    changes = []
    for d in floors.decisions(report, rules):
        change = observe_window(conn, report.model, ALL, f"floor:{d.rule}", d.index, d.end,
                                d.holds, d.details, signal=floors.SIGNAL, actor=actor,
                                observer=observer, immediate=True)  # fmt: skip
        if change is None:
            continue
        changes.append(change)
        incident = conn.execute("SELECT incident_id FROM alerts WHERE id = %s",
                                (change.alert_id,)).fetchone()  # fmt: skip
        if d.holds and incident and incident[0] is not None:
            governance.hold_stop_rule(conn, int(incident[0]), d.rule, actor=actor,
                                      model=report.model, why=d.details["summary"])  # fmt: skip
    return changes

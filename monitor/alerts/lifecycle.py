"""The alert lifecycle shared by drift and performance: open on persistence, resolve with hysteresis.

Between the window decisions (monitor/drift/scheduler.py, monitor/performance/watch.py) and the QA team
(`radwatch alerts`, Prometheus): one alert per (model, stratum, signal) at a time. An alert
opens after `open_after` consecutive firing windows (or at once for an online detector),
auto-resolves after `resolve_after` consecutive quiet windows, and can be acknowledged or
resolved by a person. Every change is written to the audit trail in the same transaction.
A reference rebuild rewinds detection to the new reference's end, so windows older than an
active alert come again: those that end before its onset are not its history and never
resolve it (it keeps its id and acknowledgement while the shift still fires).
Each opening alert joins its incident (monitor/alerts/incidents.py) in the same transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from monitor.alerts import incidents
from monitor.audit import trail
from monitor.errors import RadwatchError

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"


class AlertError(RadwatchError):
    """An alert action that cannot be done (unknown id, already resolved)."""


@dataclass(frozen=True)
class AlertPolicy:
    open_after: int = 2  # consecutive firing windows before an alert opens
    resolve_after: int = 3  # consecutive quiet windows before it resolves (hysteresis)


@dataclass(frozen=True)
class Streak:
    firing_run: int = 0
    quiet_run: int = 0


@dataclass(frozen=True)
class AlertChange:
    alert_id: int
    action: str  # opened | updated | resolved
    model: str
    stratum_kind: str
    stratum_value: str
    signal: str
    state: str


@dataclass(frozen=True)
class Alert:
    id: int
    model: str
    stratum_kind: str
    stratum_value: str
    signal: str
    state: str
    opened_at: datetime
    onset: datetime | None
    last_window_end: datetime | None
    details: Mapping[str, Any]
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledged_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolved_note: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items()}  # fmt: skip


def significance_level(details: Mapping[str, Any]) -> float:
    """The α an alert's window was judged at, for "p < α": its details' `alpha` when detection
    stored one; else the level its own tests imply (a test marked drift had adjusted p < α,
    so any p at or below the largest such p is below α too: just above that p; 0 when none).
    """
    alpha = details.get("alpha")
    if isinstance(alpha, int | float) and not isinstance(alpha, bool):
        return float(alpha)
    fired = [float(t["adjusted_p"]) for t in details.get("tests", [])
             if t.get("status") == "drift" and isinstance(t.get("adjusted_p"), int | float)]  # fmt: skip
    return math.nextafter(max(fired), math.inf) if fired else 0.0


def significant_features(details: Mapping[str, Any], alpha: float | None = None) -> list[dict]:
    """The alert's top features whose adjusted p is below α (`alpha`, else the alert's own:
    significance_level); a feature that is not significant explains nothing."""
    level = significance_level(details) if alpha is None else alpha
    return [f for f in details.get("top_features", [])
            if isinstance(f.get("adjusted_p"), int | float) and f["adjusted_p"] < level]  # fmt: skip


def format_alert(a: Alert, alpha: float | None = None) -> str:
    """An alert as the QA team reads it (`radwatch alerts list`, `radwatch demo`): the
    stratum and signal, the onset, the significant evidence (adjusted p below `alpha`, else
    the α the alert used), who acknowledged or resolved it."""
    d = a.details
    lines = [
        f"#{a.id} [{a.state}] {a.model} · {a.signal} · {a.stratum_kind}={a.stratum_value}"
        f" · opened {a.opened_at:%Y-%m-%d %H:%M} · onset {d.get('onset', '?')}"
    ]
    if d.get("drift_score") is not None:
        lines.append(
            f"    drift score {d['drift_score']:.2f} (window ending {d.get('window_end')})"
        )
    features = d.get("top_features", [])
    shown = significant_features(d, alpha)
    for f in shown:
        lines.append(
            f"    {f['summary']} (adj. p={f['adjusted_p']:.2g}, effect {f['effect_size']:.2f})"
        )
    if features and not shown:
        lines.append("    no single contributor significant")
    for t in d.get("tests", []):
        # Whole-signal tests carry their own one-line reading (WindowDetector.summary).
        if t.get("status") == "drift" and t.get("summary"):
            lines.append(f"    {t['detector']}: {t['summary']}, adj. p={t['adjusted_p']:.2g}")
    if d.get("atypical_ids"):
        lines.append(f"    most atypical studies: {', '.join(d['atypical_ids'][:5])}")
    if a.acknowledged_by:
        lines.append(f"    acknowledged by {a.acknowledged_by}: {a.acknowledged_note}")
    if a.resolved_by:
        lines.append(f"    resolved by {a.resolved_by}: {a.resolved_note}")
    return "\n".join(lines)


def step(
    streak: Streak,
    *,
    firing: bool,
    immediate: bool,
    active: bool,
    policy: AlertPolicy,
    before_onset: bool = False,
) -> tuple[Streak, str | None]:
    """Pure persistence/hysteresis rule: the new streak and 'open' | 'resolve' | None.

    `before_onset`: the window ends before the active alert's onset (a rebuilt reference
    judges older windows again); a quiet one neither counts towards resolving the alert
    nor carries an earlier quiet run forward.
    """
    if firing:
        new = Streak(streak.firing_run + 1, 0)
        if not active and (immediate or new.firing_run >= policy.open_after):
            return new, "open"
        return new, None
    if active and before_onset:
        return Streak(), None
    new = Streak(0, streak.quiet_run + 1)
    if active and new.quiet_run >= policy.resolve_after:
        return new, "resolve"
    return new, None


def observe(
    conn: psycopg.Connection,
    *,
    model: str,
    stratum_kind: str,
    stratum_value: str,
    signal: str,
    firing: bool,
    details: Mapping[str, Any],
    window_end: datetime,
    actor: str,
    immediate: bool = False,
    policy: AlertPolicy | None = None,
    enrich: Callable[[], Mapping[str, Any]] | None = None,
) -> AlertChange | None:
    """Feed one window's decision for one (model, stratum, signal); returns what changed.

    `immediate` opens on a single firing (online detectors). `enrich` is called only when
    an alert opens, for costly details (onset estimation); its "onset" key (a datetime or
    ISO string) fills the alert's onset column.
    """
    policy = policy or AlertPolicy()
    key = (model, stratum_kind, stratum_value, signal)
    with conn.transaction():
        row = conn.execute(
            """SELECT firing_run, quiet_run FROM alert_streaks
               WHERE model_name = %s AND stratum_kind = %s AND stratum_value = %s AND signal = %s
               FOR UPDATE""",
            key,
        ).fetchone()
        streak = Streak(int(row[0]), int(row[1])) if row else Streak()
        # An alert's history starts at its onset, or at its first firing window when the
        # onset is unknown (first_window_end).
        active = conn.execute(
            """SELECT id, state, coalesce(onset, first_window_end), incident_id FROM alerts
               WHERE model_name = %s AND stratum_kind = %s AND stratum_value = %s
                 AND signal = %s AND state <> 'resolved' FOR UPDATE""",
            key,
        ).fetchone()
        since = active[2] if active else None
        new, action = step(streak, firing=firing, immediate=immediate,
                           active=active is not None, policy=policy,
                           before_onset=since is not None and window_end < since)  # fmt: skip
        first_firing = conn.execute(
            """INSERT INTO alert_streaks (model_name, stratum_kind, stratum_value, signal,
                   firing_run, quiet_run, first_firing_end, last_window_end)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (model_name, stratum_kind, stratum_value, signal) DO UPDATE SET
                   firing_run = EXCLUDED.firing_run, quiet_run = EXCLUDED.quiet_run,
                   first_firing_end = CASE WHEN EXCLUDED.firing_run = 1 THEN EXCLUDED.last_window_end
                                           WHEN EXCLUDED.firing_run = 0 THEN NULL
                                           ELSE alert_streaks.first_firing_end END,
                   last_window_end = EXCLUDED.last_window_end
               RETURNING first_firing_end""",
            (*key, new.firing_run, new.quiet_run, window_end if new.firing_run == 1 else None,
             window_end),
        ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        refs = {"model": model, "stratum": f"{stratum_kind}={stratum_value}", "signal": signal}
        if action == "open":
            extra = dict(enrich()) if enrich else {}
            onset = extra.get("onset")
            body = {**details, **extra, "firing_windows": new.firing_run}
            alert_id = conn.execute(
                """INSERT INTO alerts (model_name, stratum_kind, stratum_value, signal, state,
                       first_window_end, last_window_end, onset, details)
                   VALUES (%s, %s, %s, %s, 'open', %s, %s, %s, %s) RETURNING id""",
                (*key, first_firing or window_end, window_end, onset, Jsonb(audit_safe(body))),
            ).fetchone()[0]  # type: ignore[index]
            trail.record(conn, actor=actor, action="alert.opened", entity_type="alert",
                         entity_id=str(alert_id), outcome=OPEN, refs=refs,
                         detail=audit_safe(body))  # fmt: skip
            incidents.attach(conn, int(alert_id), actor=actor)  # same transaction
            return AlertChange(int(alert_id), "opened", *key, OPEN)
        if active is None:
            return None
        alert_id, state = int(active[0]), str(active[1])
        if action == "resolve":
            note = f"quiet for {new.quiet_run} consecutive windows"
            conn.execute(
                """UPDATE alerts SET state = 'resolved', resolved_by = %s, resolved_at = now(),
                       resolved_note = %s, updated_at = now(), last_window_end = %s WHERE id = %s""",
                (actor, note, window_end, alert_id),
            )
            trail.record(conn, actor=actor, action="alert.resolved", entity_type="alert",
                         entity_id=str(alert_id), outcome=RESOLVED, reason=note, refs=refs,
                         detail={"automatic": True, "window_end": window_end.isoformat()})  # fmt: skip
            incidents.alert_resolved(conn, alert_id, actor=actor)
            return AlertChange(alert_id, "resolved", *key, RESOLVED)
        if firing:
            conn.execute(
                """UPDATE alerts SET details = details || %s, last_window_end = %s,
                       updated_at = now() WHERE id = %s""",
                (Jsonb(audit_safe({"latest": dict(details)})), window_end, alert_id),
            )
            trail.record(conn, actor=actor, action="alert.updated", entity_type="alert",
                         entity_id=str(alert_id), outcome=state, refs=refs,
                         detail={"window_end": window_end.isoformat(),
                                 "firing_windows": new.firing_run})  # fmt: skip
            if active[3] is None:  # opened before incidents existed: it joins one now
                incidents.attach(conn, alert_id, actor=actor)
            return AlertChange(alert_id, "updated", *key, state)
        return None


def acknowledge(conn: psycopg.Connection, alert_id: int, *, by: str, note: str) -> Alert:
    """A person takes the alert: it stays active (and can auto-resolve) but is owned."""
    with conn.transaction():
        trail.lock(conn)  # before the row lock: see trail.lock
        alert = get(conn, alert_id, lock=True)
        if alert.state == RESOLVED:
            raise AlertError(f"alert {alert_id} is already resolved")
        conn.execute(
            """UPDATE alerts SET state = 'acknowledged', acknowledged_by = %s,
                   acknowledged_at = now(), acknowledged_note = %s, updated_at = now()
               WHERE id = %s""",
            (by, note, alert_id),
        )
        trail.record(conn, actor=by, action="alert.acknowledged", entity_type="alert",
                     entity_id=str(alert_id), outcome=ACKNOWLEDGED, reason=note,
                     refs=_refs(alert))  # fmt: skip
    return get(conn, alert_id)


def resolve(conn: psycopg.Connection, alert_id: int, *, by: str, note: str) -> Alert:
    """A person closes the alert; if the shift persists, a new alert opens after persistence."""
    with conn.transaction():
        trail.lock(conn)  # before the row lock: see trail.lock
        alert = get(conn, alert_id, lock=True)
        if alert.state == RESOLVED:
            raise AlertError(f"alert {alert_id} is already resolved")
        conn.execute(
            """UPDATE alerts SET state = 'resolved', resolved_by = %s, resolved_at = now(),
                   resolved_note = %s, updated_at = now() WHERE id = %s""",
            (by, note, alert_id),
        )
        conn.execute(
            """UPDATE alert_streaks SET firing_run = 0 WHERE model_name = %s AND stratum_kind = %s
                 AND stratum_value = %s AND signal = %s""",
            (alert.model, alert.stratum_kind, alert.stratum_value, alert.signal),
        )
        trail.record(conn, actor=by, action="alert.resolved", entity_type="alert",
                     entity_id=str(alert_id), outcome=RESOLVED, reason=note,
                     refs=_refs(alert), detail={"automatic": False})  # fmt: skip
        incidents.alert_resolved(conn, alert_id, actor=by)
    return get(conn, alert_id)


_COLUMNS = """id, model_name, stratum_kind, stratum_value, signal, state, opened_at, onset,
    last_window_end, details, acknowledged_by, acknowledged_at, acknowledged_note,
    resolved_by, resolved_at, resolved_note"""


def get(conn: psycopg.Connection, alert_id: int, *, lock: bool = False) -> Alert:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM alerts WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (alert_id,),
    ).fetchone()
    if row is None:
        raise AlertError(f"no alert with id {alert_id}")
    return Alert(*row)


def list_alerts(
    conn: psycopg.Connection, *, state: str | None = None, model: str | None = None
) -> list[Alert]:
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM alerts
            WHERE (%(state)s::text IS NULL OR state = %(state)s)
              AND (%(model)s::text IS NULL OR model_name = %(model)s)
            ORDER BY opened_at, id""",
        {"state": state, "model": model},
    ).fetchall()
    return [Alert(*r) for r in rows]


def _refs(alert: Alert) -> dict[str, str]:
    return {"model": alert.model, "stratum": f"{alert.stratum_kind}={alert.stratum_value}",
            "signal": alert.signal}  # fmt: skip


def audit_safe(value: Any) -> Any:
    """JSON-ready copy: datetimes as ISO strings, NaN/inf as null (jsonb rejects NaN)."""
    if isinstance(value, Mapping):
        return {str(k): audit_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [audit_safe(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    return value

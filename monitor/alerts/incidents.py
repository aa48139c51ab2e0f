"""Incidents: related alerts of one model held as one thing to act on, stored and audited.

Between the alert lifecycle (monitor/alerts/lifecycle.py calls `attach` when an alert opens and
`alert_resolved` when one resolves, in the same transaction) and the QA team (`radwatch incidents`,
the demo). Which alerts belong together and what the incident says is decided by the pure
monitor/alerts/grouping.py; this module reads the alerts, stores the incident and audits it.

Lifecycle: an opening alert joins the model's open or acknowledged incident it groups with,
else opens one (`incident.opened`); each join recomputes root cause, shift type and statement
(`incident.updated`). Acknowledging an incident acknowledges its open alerts; resolving it
resolves its active alerts (each change audited on the alert too), since a QA lead closing an
incident expects its alerts closed; the alerts themselves stay, for the audit trail. An alert
joining an acknowledged incident leaves it acknowledged (someone owns it) and the alert open.
An incident resolves by itself when all its alerts are resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from monitor.alerts import governance, grouping
from monitor.audit import trail
from monitor.errors import RadwatchError

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
INCIDENT_LOCK = 0x7264_696E  # "rdin": with hashtext(model), one grouping per model at a time
# Sites per scanner are read from the studies of this span before the earliest onset onwards.
SITES_LOOKBACK = timedelta(days=30)


class IncidentError(RadwatchError):
    """An incident action that cannot be done (unknown id, already resolved, nobody named)."""


@dataclass(frozen=True)
class Incident:
    id: int
    model: str
    state: str
    root_cause_kind: str
    root_cause_value: str
    root_cause: str
    shift_type: str
    summary: str
    recommended_action: str
    onset: datetime | None
    opened_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledged_note: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolved_note: str | None
    plan_clause: str | None  # the monitoring plan's clause it fired under (None: before 0011)
    plan_version: str | None
    stop_rule: str | None  # a plan stop rule that holds: suspend use recommended
    decision: str | None  # suspend | continue, the governance decision on it
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None
    alerts: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        """The `radwatch incidents list --json` object (a contract: keys are only added)."""
        out = {k: (v.isoformat() if isinstance(v, datetime) else v)
               for k, v in self.__dict__.items()}  # fmt: skip
        out["alerts"] = list(self.alerts)
        return out


def format_incident(i: Incident) -> str:
    """An incident as the QA team reads it (`radwatch incidents list`, `radwatch demo`)."""
    onset = f"{i.onset:%Y-%m-%d %H:%M}" if i.onset else "?"
    lines = [
        f"incident #{i.id} [{i.state}] {i.model} · {i.root_cause} · {i.shift_type}"
        f" · onset {onset} · alerts {', '.join(f'#{a}' for a in i.alerts) or '-'}",
        f"    {i.summary}",
        f"    recommended: {i.recommended_action}",
        f"    plan: {i.plan_clause or '-'} (plan {i.plan_version or '-'})",
    ]
    if i.stop_rule and not i.decision:
        lines.append(f"    SUSPEND USE RECOMMENDED: stop rule {i.stop_rule} holds; record the "
                     f"decision: radwatch incidents decide {i.id} --decision suspend|continue "
                     "--by WHO --reason TEXT")  # fmt: skip
    elif i.stop_rule:
        lines.append(f"    stop rule {i.stop_rule}: {i.decision} (decided by {i.decided_by}: "
                     f"{i.decision_reason})")  # fmt: skip
    if i.acknowledged_by:
        lines.append(f"    acknowledged by {i.acknowledged_by}: {i.acknowledged_note}")
    if i.resolved_by:
        lines.append(f"    resolved by {i.resolved_by}: {i.resolved_note}")
    return "\n".join(lines)


# --- joining alerts ------------------------------------------------------------------------------


def attach(conn: psycopg.Connection, alert_id: int, *, actor: str) -> int:
    """Put a just-opened alert into its incident (new or existing); returns the incident id."""
    with conn.transaction():
        found_alert = _facts(conn, "a.id = %s", (alert_id,))
        if not found_alert:
            raise IncidentError(f"no alert with id {alert_id}")
        alert = found_alert[0]
        conn.execute("SELECT pg_advisory_xact_lock(%s::int, hashtext(%s))",
                     (INCIDENT_LOCK, alert.model))  # fmt: skip
        active = [int(r[0]) for r in conn.execute(
            """SELECT id FROM incidents WHERE model_name = %s AND state <> 'resolved'
               ORDER BY opened_at, id FOR UPDATE""",
            (alert.model,),
        ).fetchall()]  # fmt: skip
        members = {i: _facts(conn, "a.incident_id = %s", (i,)) for i in active}
        everyone = [alert, *(m for ms in members.values() for m in ms)]
        sites_of = _sites_of(conn, alert.model, everyone)
        pick = grouping.choose(alert, [members[i] for i in active], sites_of)
        if pick is None:
            found = grouping.assess([alert], sites_of)
            plan = governance.terms(conn, alert.model, found.shift_type)
            incident_id = int(conn.execute(
                """INSERT INTO incidents (model_name, state, root_cause_kind, root_cause_value,
                       root_cause, shift_type, summary, recommended_action, onset, details,
                       plan_clause, plan_version)
                   VALUES (%s, 'open', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (alert.model, found.root_kind, found.root_value, found.root_cause,
                 found.shift_type, found.summary, plan.action, found.onset,
                 Jsonb(_detail(found, [alert], plan)), plan.clause, plan.plan_version),
            ).fetchone()[0])  # type: ignore[index]  # fmt: skip
            _link(conn, alert_id, incident_id)
            trail.record(conn, actor=actor, action="incident.opened", entity_type="incident",
                         entity_id=str(incident_id), outcome=OPEN,
                         refs=_refs(alert.model, found.root_cause, [alert_id]),
                         detail=_detail(found, [alert], plan))  # fmt: skip
            if plan.stop_rule:
                governance.hold_stop_rule(conn, incident_id, plan.stop_rule, actor=actor,
                                          model=alert.model, why=plan.clause)  # fmt: skip
            return incident_id
        incident_id = active[pick]
        group = [*members[incident_id], alert]
        found = grouping.assess(group, sites_of)
        plan = governance.terms(conn, alert.model, found.shift_type)
        _link(conn, alert_id, incident_id)
        state = conn.execute(
            """UPDATE incidents SET root_cause_kind = %s, root_cause_value = %s,
                   root_cause = %s, shift_type = %s, summary = %s, recommended_action = %s,
                   onset = %s, details = %s, plan_clause = %s, plan_version = %s,
                   updated_at = now() WHERE id = %s RETURNING state""",
            (found.root_kind, found.root_value, found.root_cause, found.shift_type,
             found.summary, plan.action, found.onset, Jsonb(_detail(found, group, plan)),
             plan.clause, plan.plan_version, incident_id),
        ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        outcome = ACKNOWLEDGED if state == ACKNOWLEDGED else OPEN
        trail.record(conn, actor=actor, action="incident.updated", entity_type="incident",
                     entity_id=str(incident_id), outcome=outcome,
                     refs=_refs(alert.model, found.root_cause, [m.id for m in group]),
                     detail={**_detail(found, group, plan), "joined_alert": alert_id})  # fmt: skip
        if plan.stop_rule:
            governance.hold_stop_rule(conn, incident_id, plan.stop_rule, actor=actor,
                                      model=alert.model, why=plan.clause, state=outcome)  # fmt: skip
        return incident_id


def alert_resolved(conn: psycopg.Connection, alert_id: int, *, actor: str) -> int | None:
    """After an alert resolved: its incident resolves too when none of its alerts is active.
    Returns the incident id when it resolved."""
    with conn.transaction():
        row = conn.execute(
            """SELECT i.id, i.model_name, i.root_cause FROM alerts a
               JOIN incidents i ON i.id = a.incident_id
               WHERE a.id = %s AND i.state <> 'resolved' FOR UPDATE OF i""",
            (alert_id,),
        ).fetchone()
        if row is None:
            return None
        incident_id, model, root_cause = int(row[0]), str(row[1]), str(row[2])
        ids = _alert_ids(conn, incident_id, active_only=True)
        if ids:
            return None
        everyone = _alert_ids(conn, incident_id)
        note = f"all {len(everyone)} of its alerts resolved"
        _close(conn, incident_id, actor, note)
        trail.record(conn, actor=actor, action="incident.resolved", entity_type="incident",
                     entity_id=str(incident_id), outcome=RESOLVED, reason=note,
                     refs=_refs(model, root_cause, everyone),
                     detail={"automatic": True, "last_alert": alert_id})  # fmt: skip
        return incident_id


# --- people acting on an incident -----------------------------------------------------------------


def acknowledge(conn: psycopg.Connection, incident_id: int, *, by: str, note: str) -> Incident:
    """A person takes the incident; its open alerts are acknowledged with it (each audited)."""
    by = _who(by)
    with conn.transaction():
        trail.lock(conn)  # before the row lock: see trail.lock
        incident = get(conn, incident_id, lock=True)
        if incident.state == RESOLVED:
            raise IncidentError(f"incident {incident_id} is already resolved")
        conn.execute(
            """UPDATE incidents SET state = 'acknowledged', acknowledged_by = %s,
                   acknowledged_at = now(), acknowledged_note = %s, updated_at = now()
               WHERE id = %s""",
            (by, note, incident_id),
        )
        taken = conn.execute(
            """UPDATE alerts SET state = 'acknowledged', acknowledged_by = %s,
                   acknowledged_at = now(), acknowledged_note = %s, updated_at = now()
               WHERE incident_id = %s AND state = 'open'
               RETURNING id, stratum_kind, stratum_value, signal""",
            (by, f"incident {incident_id}: {note}", incident_id),
        ).fetchall()
        for alert in sorted(taken):
            trail.record(conn, actor=by, action="alert.acknowledged", entity_type="alert",
                         entity_id=str(alert[0]), outcome=ACKNOWLEDGED, reason=note,
                         refs=_alert_refs(incident.model, alert, incident_id))  # fmt: skip
        trail.record(conn, actor=by, action="incident.acknowledged", entity_type="incident",
                     entity_id=str(incident_id), outcome=ACKNOWLEDGED, reason=note,
                     refs=_refs(incident.model, incident.root_cause, list(incident.alerts)),
                     detail={"alerts_acknowledged": sorted(int(a[0]) for a in taken)})  # fmt: skip
    return get(conn, incident_id)


def resolve(conn: psycopg.Connection, incident_id: int, *, by: str, note: str) -> Incident:
    """A person closes the incident and its active alerts (each audited); if the shift goes
    on, new alerts open after persistence and form a new incident."""
    by = _who(by)
    with conn.transaction():
        trail.lock(conn)  # before the row lock: see trail.lock
        incident = get(conn, incident_id, lock=True)
        if incident.state == RESOLVED:
            raise IncidentError(f"incident {incident_id} is already resolved")
        closed = conn.execute(
            """UPDATE alerts SET state = 'resolved', resolved_by = %s, resolved_at = now(),
                   resolved_note = %s, updated_at = now()
               WHERE incident_id = %s AND state <> 'resolved'
               RETURNING id, stratum_kind, stratum_value, signal""",
            (by, f"incident {incident_id}: {note}", incident_id),
        ).fetchall()
        for alert in sorted(closed):
            # As for an alert resolved by hand: its persistence starts again.
            conn.execute(
                """UPDATE alert_streaks SET firing_run = 0 WHERE model_name = %s
                     AND stratum_kind = %s AND stratum_value = %s AND signal = %s""",
                (incident.model, alert[1], alert[2], alert[3]),
            )
            trail.record(conn, actor=by, action="alert.resolved", entity_type="alert",
                         entity_id=str(alert[0]), outcome=RESOLVED, reason=note,
                         refs=_alert_refs(incident.model, alert, incident_id),
                         detail={"automatic": False, "incident": incident_id})  # fmt: skip
        _close(conn, incident_id, by, note)
        trail.record(conn, actor=by, action="incident.resolved", entity_type="incident",
                     entity_id=str(incident_id), outcome=RESOLVED, reason=note,
                     refs=_refs(incident.model, incident.root_cause, list(incident.alerts)),
                     detail={"automatic": False,
                             "alerts_resolved": sorted(int(a[0]) for a in closed)})  # fmt: skip
    return get(conn, incident_id)


# --- reading ------------------------------------------------------------------------------------

_COLUMNS = """i.id, i.model_name, i.state, i.root_cause_kind, i.root_cause_value, i.root_cause,
    i.shift_type, i.summary, i.recommended_action, i.onset, i.opened_at, i.updated_at,
    i.acknowledged_by, i.acknowledged_at, i.acknowledged_note, i.resolved_by, i.resolved_at,
    i.resolved_note, i.plan_clause, i.plan_version, i.stop_rule, i.decision, i.decided_by,
    i.decided_at, i.decision_reason,
    ARRAY(SELECT a.id FROM alerts a WHERE a.incident_id = i.id ORDER BY a.id)"""


def get(conn: psycopg.Connection, incident_id: int, *, lock: bool = False) -> Incident:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM incidents i WHERE i.id = %s" + (" FOR UPDATE" if lock else ""),
        (incident_id,),
    ).fetchone()
    if row is None:
        raise IncidentError(f"no incident with id {incident_id}")
    return _incident(row)


def list_incidents(
    conn: psycopg.Connection, *, all: bool = False, model: str | None = None
) -> list[Incident]:
    """Open and acknowledged incidents, oldest first (`all`: resolved ones too)."""
    rows = conn.execute(
        f"""SELECT {_COLUMNS} FROM incidents i
            WHERE (%(all)s OR i.state <> 'resolved')
              AND (%(model)s::text IS NULL OR i.model_name = %(model)s)
            ORDER BY i.opened_at, i.id""",
        {"all": all, "model": model},
    ).fetchall()
    return [_incident(r) for r in rows]


def _incident(row: Sequence[Any]) -> Incident:
    fields: list[Any] = [*row[:-1], tuple(int(a) for a in row[-1])]
    return Incident(*fields)


# --- helpers ------------------------------------------------------------------------------------


def _facts(
    conn: psycopg.Connection, where: str, params: Sequence[Any]
) -> list[grouping.AlertFacts]:
    rows = conn.execute(
        f"""SELECT a.id, a.model_name, a.stratum_kind, a.stratum_value, a.signal,
                   coalesce(a.onset, a.first_window_end, a.opened_at), a.details,
                   a.last_window_end
            FROM alerts a WHERE {where} ORDER BY a.id""",
        params,
    ).fetchall()
    return [grouping.AlertFacts(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), r[5],
                                r[6] or {}, _span(r[6] or {}, r[7])) for r in rows]  # fmt: skip


def _span(details: Mapping[str, Any], last_window_end: datetime | None) -> timedelta | None:
    """The opening window's span where its details hold only its start (performance windows:
    the alert's last_window_end is that window's end)."""
    start = details.get("window_start")
    if not isinstance(start, str) or last_window_end is None or "window_end" in details:
        return None
    try:
        return last_window_end - datetime.fromisoformat(start)
    except (ValueError, TypeError):
        return None


def _sites_of(conn: psycopg.Connection, model: str,
              alerts: Sequence[grouping.AlertFacts]) -> dict[str, frozenset[str]]:  # fmt: skip
    """The sites each scanner among the alerts produced studies at, read from `inferences`
    (the same "Manufacturer ManufacturerModelName" name as the scanner stratum) around the
    alerts' onsets, through the (model_name, occurred_at) index."""
    scanners = sorted({a.stratum_value for a in alerts if a.stratum_kind == "scanner"})
    if not scanners:
        return {}
    rows = conn.execute(
        """SELECT scanner, array_agg(DISTINCT site) FROM (
               SELECT site, concat_ws(' ', nullif(dicom->>'Manufacturer', ''),
                                      nullif(dicom->>'ManufacturerModelName', '')) AS scanner
               FROM inferences WHERE model_name = %s AND occurred_at >= %s AND site IS NOT NULL
           ) s WHERE scanner = ANY(%s) GROUP BY scanner""",
        (model, min(a.onset for a in alerts) - SITES_LOOKBACK, scanners),
    ).fetchall()
    return {str(r[0]): frozenset(str(s) for s in r[1]) for r in rows}


def _link(conn: psycopg.Connection, alert_id: int, incident_id: int) -> None:
    conn.execute("UPDATE alerts SET incident_id = %s WHERE id = %s", (incident_id, alert_id))


def _close(conn: psycopg.Connection, incident_id: int, by: str, note: str) -> None:
    conn.execute(
        """UPDATE incidents SET state = 'resolved', resolved_by = %s, resolved_at = now(),
               resolved_note = %s, updated_at = now() WHERE id = %s""",
        (by, note, incident_id),
    )


def _alert_ids(
    conn: psycopg.Connection, incident_id: int, *, active_only: bool = False
) -> list[int]:
    rows = conn.execute(
        """SELECT id FROM alerts WHERE incident_id = %s AND (NOT %s OR state <> 'resolved')
           ORDER BY id""",
        (incident_id, active_only),
    ).fetchall()
    return [int(r[0]) for r in rows]


def _who(by: str) -> str:
    if not by or not by.strip():
        raise IncidentError("--by must name who acts (a person's pseudonymous handle)")
    return by.strip()


def _detail(found: grouping.Assessment, group: Sequence[grouping.AlertFacts],
            plan: governance.Terms) -> dict[str, Any]:  # fmt: skip
    return {"root_cause": found.root_cause, "shift_type": found.shift_type,
            "summary": found.summary, "onset": found.onset.isoformat(),
            "plan_clause": plan.clause, "plan_version": plan.plan_version, "owner": plan.owner,
            "severity": plan.severity,
            "alerts": [{"id": m.id, "stratum": f"{m.stratum_kind}={m.stratum_value}",
                        "signal": m.signal} for m in group]}  # fmt: skip


def _refs(model: str, root_cause: str, alert_ids: Sequence[int]) -> Mapping[str, Any]:
    return {"model": model, "root_cause": root_cause, "alerts": [int(a) for a in alert_ids]}


def _alert_refs(model: str, alert: Sequence[Any], incident_id: int) -> Mapping[str, Any]:
    return {"model": model, "stratum": f"{alert[1]}={alert[2]}", "signal": alert[3],
            "incident": incident_id}  # fmt: skip

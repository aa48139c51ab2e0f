"""What the monitoring plan in force says of an incident, and the governance decision on it.

Between the incidents (monitor/alerts/incidents.py asks `terms` each time it opens or
re-reads an incident) and the plan (monitor/plan/store.py): the clause the incident fires
under (`incident_types.<shift type>`), its owner, severity and recommended action, and the
stop rule that holds for it, if any. A held stop rule means "suspend use recommended":
`/metrics` exposes it until a person records the decision here (`radwatch incidents decide`,
audited as incident.decided) — the deployer's duty to monitor and suspend, EU AI Act
Art. 26(5). Metric stop rules (a performance floor) are checked by the performance watch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import psycopg

from monitor.audit import trail
from monitor.errors import RadwatchError
from monitor.plan import store

Decision = Literal["suspend", "continue"]
DECISIONS: tuple[Decision, ...] = ("suspend", "continue")


class DecisionError(RadwatchError):
    """A decision that cannot be recorded (unknown incident, no stop rule, nobody named)."""


@dataclass(frozen=True)
class Terms:
    """The plan's word on one incident."""

    plan_version: str
    clause: str  # e.g. incident_types.integration
    owner: str
    severity: str
    action: str
    stop_rule: str | None  # the id of the first stop rule holding for its shift type


def terms(conn: psycopg.Connection, model: str, shift_type: str) -> Terms:
    """The plan in force's terms for an incident of `shift_type` (the default plan when none
    is approved)."""
    plan = store.in_force(conn, model).plan
    kind = plan.incident_types[shift_type]  # type: ignore[index]  # every type is required
    rules = plan.stop_rules_for(shift_type)
    return Terms(plan.version, plan.incident_clause(shift_type), kind.owner,
                 "critical" if rules else kind.severity, kind.action,
                 rules[0].id if rules else None)  # fmt: skip


def hold_stop_rule(conn: psycopg.Connection, incident_id: int, rule: str, *, actor: str,
                   model: str, why: str, state: str = "open") -> bool:  # fmt: skip
    """Mark an open incident's stop rule as holding (once; a held rule is never un-held by a
    re-classification). True when it was newly set. In the caller's transaction."""
    row = conn.execute(
        """UPDATE incidents SET stop_rule = %s, updated_at = now()
           WHERE id = %s AND stop_rule IS NULL AND state <> 'resolved' RETURNING id""",
        (rule, incident_id),
    ).fetchone()
    if row is None:
        return False
    trail.record(conn, actor=actor, action="incident.updated", entity_type="incident",
                 entity_id=str(incident_id), outcome=state,
                 refs={"model": model, "stop_rule": rule},
                 detail={"stop_rule": rule, "suspend_use_recommended": True, "why": why})  # fmt: skip
    return True


def decide(conn: psycopg.Connection, incident_id: int, *, decision: str, by: str,
           reason: str) -> None:  # fmt: skip
    """Record the person's decision on an incident whose stop rule holds."""
    who = by.strip() if by else ""
    if not who:
        raise DecisionError("--by must name who decides (a person's pseudonymous handle)")
    if decision not in DECISIONS:
        raise DecisionError(f"--decision must be one of {', '.join(DECISIONS)}")
    if not reason or not reason.strip():
        raise DecisionError("--reason must say why (it is kept in the audit trail)")
    with conn.transaction():
        trail.lock(conn)  # before the row lock: see trail.lock
        row = conn.execute(
            """SELECT model_name, state, stop_rule, decision FROM incidents WHERE id = %s
               FOR UPDATE""",
            (incident_id,),
        ).fetchone()
        if row is None:
            raise DecisionError(f"no incident with id {incident_id}")
        model, state, rule, earlier = row
        if rule is None:
            raise DecisionError(f"incident {incident_id} holds no stop rule: acknowledge or "
                                "resolve it (radwatch incidents ack|resolve)")  # fmt: skip
        if state == "resolved":
            raise DecisionError(f"incident {incident_id} is already resolved")
        conn.execute(
            """UPDATE incidents SET decision = %s, decided_by = %s, decided_at = now(),
                   decision_reason = %s, updated_at = now() WHERE id = %s""",
            (decision, who, reason.strip(), incident_id),
        )
        trail.record(conn, actor=who, action="incident.decided", entity_type="incident",
                     entity_id=str(incident_id), outcome=decision, reason=reason.strip(),
                     refs={"model": model, "stop_rule": rule},
                     detail={"decision": decision, "previous_decision": earlier})  # fmt: skip

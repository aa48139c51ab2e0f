"""Approved monitoring plans in PostgreSQL: the one in force per model, approval with its diff.

Between the plan file (monitor/plan/document.py) and the parts that run it: detection takes the
false-alarm budget and windows from `in_force`, incidents their clause, owner, action and stop
rules. A plan takes effect only when a named person approves it (`radwatch plan approve`);
the approval, with the diff against the version it replaces, is an audit row (plan.approved)
written in the same transaction. Without an approved plan the default plan is in force.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

import psycopg

from monitor.audit import trail
from monitor.plan.document import Budget, Plan, PlanError, default_plan, diff, dump, parse


@dataclass(frozen=True)
class PlanInForce:
    plan: Plan
    approved_by: str | None  # None: the default plan, approved by nobody
    approved_at: datetime | None
    sha256: str

    @property
    def is_default(self) -> bool:
        return self.approved_by is None


def in_force(conn: psycopg.Connection, model: str, *, budget: Budget | None = None) -> PlanInForce:
    """The model's newest approved plan, else the default plan (with `budget`, the settings'
    false-alarm budget, when given)."""
    row = conn.execute(
        """SELECT content, approved_by, approved_at, sha256 FROM monitoring_plans
           WHERE model_name = %s ORDER BY approved_at DESC, id DESC LIMIT 1""",
        (model,),
    ).fetchone()
    if row is not None:
        return PlanInForce(parse(row[0], model=model), row[1], row[2], row[3])
    plan = default_plan(model)
    if budget is not None:
        plan = plan.model_copy(update={"false_alarm_budget": budget})
    return PlanInForce(plan, None, None, _sha256(dump(plan)))


def approve(conn: psycopg.Connection, plan: Plan, *, by: str, note: str | None = None) -> str:
    """Put `plan` in force for its model, approved by `by`; returns the diff it made.

    Refused: an empty `by`, a version already used for other content, a plan identical to
    the one in force (nothing to approve).
    """
    who = by.strip()
    if not who:
        raise PlanError("--by must name who approves the plan")
    text = dump(plan)
    digest = _sha256(text)
    with conn.transaction():
        trail.lock(conn)  # audit lock before the rows (see trail.lock)
        current = in_force(conn, plan.model)
        if current.sha256 == digest and not current.is_default:
            raise PlanError(f"plan {plan.version} is already in force for {plan.model}")
        clash = conn.execute(
            "SELECT sha256 FROM monitoring_plans WHERE model_name = %s AND version = %s",
            (plan.model, plan.version),
        ).fetchone()
        if clash is not None:
            raise PlanError(f"version {plan.version!r} of the {plan.model} plan was approved "
                            "before with other content: give the change a new version")  # fmt: skip
        change = diff(current.plan, plan)
        conn.execute(
            """INSERT INTO monitoring_plans (model_name, version, content, sha256, approved_by,
                   note) VALUES (%s, %s, %s, %s, %s, %s)""",
            (plan.model, plan.version, text, digest, who, note),
        )
        trail.record(conn, actor=who, action="plan.approved", entity_type="monitoring_plan",
                     entity_id=plan.model, entity_version=plan.version, reason=note,
                     refs={"model": plan.model, "sha256": digest,
                           "replaces": current.plan.version},
                     detail={"diff": change, "sha256": digest,
                             "replaces_sha256": current.sha256})  # fmt: skip
    return change


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

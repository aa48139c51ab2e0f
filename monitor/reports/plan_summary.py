"""What `radwatch plan show` says: the plan in force, who approved it, its budget and what the
budget derives at the model's volume, its stop rules.

Between the plan store (monitor/plan/store.py), the budget's derivation (monitor/alerts/
budget.py) and the command line; `plan render` (monitor/reports/plan_document.py) draws on
the same summary. Reads only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from detectors.false_alarm_budget import FalseAlarmBudget
from monitor.alerts import budget
from monitor.config import Settings
from monitor.plan import store
from monitor.plan.document import Budget, Plan, as_json


@dataclass(frozen=True)
class ShownPlan:
    plan: Plan
    approved_by: str | None
    approved_at: datetime | None
    sha256: str
    derived: dict[str, Any]  # monitor.alerts.budget.shown for the plan's budget

    def as_json(self) -> dict[str, Any]:
        p = self.plan
        return {"model": p.model, "version": p.version, "approved_by": self.approved_by,
                "approved_at": self.approved_at, "sha256": self.sha256,
                "in_force": "approved" if self.approved_by else "default (no plan approved)",
                "false_alarm_budget": p.false_alarm_budget.model_dump(),
                "derived": self.derived,
                "stop_rules": [r.model_dump(mode="json", exclude_none=True)
                               for r in p.stop_rules],
                "plan": as_json(p)}  # fmt: skip

    def lines(self) -> list[str]:
        p = self.plan
        who = (f"approved by {self.approved_by} on {self.approved_at:%Y-%m-%d %H:%M}"
               if self.approved_by and self.approved_at
               else "the default plan: no plan approved for this model")  # fmt: skip
        out = [f"{p.model} monitoring plan {p.version} ({who}), sha256 {self.sha256[:12]}…",
               f"  intended use: {p.intended_use}", f"  owner: {p.owner}",
               f"  signals: {', '.join(p.signals)}; strata: {', '.join(p.strata)}",
               f"  windows: drift {p.windows.drift} studies, performance "
               f"{p.windows.performance}; reference: {p.reference.source}, at least "
               f"{p.reference.min_studies} studies"]  # fmt: skip
        out += [f"  {line}" for line in self.derived.get("explanation", [])]
        out.append("  incident types:")
        for kind, t in p.incident_types.items():
            out.append(f"    {kind} [{t.severity}] → {t.owner}")
        out.append("  stop rules:")
        for r in p.stop_rules:
            when = (f"an {r.shift_type} incident" if r.shift_type
                    else f"{r.metric} below {r.below} with {r.confidence:.0%} confidence")  # fmt: skip
            out.append(f"    {r.id}: {when} → suspend use recommended ({r.receiver})")
        out.append(f"  review every {p.review.cadence_days} days by {p.review.owner}; audit "
                   f"kept {p.retention.audit_years} years, events {p.retention.events_days} days")  # fmt: skip
        return out


def plan_budget(plan: Plan) -> FalseAlarmBudget:
    b = plan.false_alarm_budget
    return FalseAlarmBudget(b.incidents, b.days)


def shown(conn: psycopg.Connection, model: str, settings: Settings) -> ShownPlan:
    found = store.in_force(
        conn, model, budget=Budget(incidents=settings.budget_incidents, days=settings.budget_days)
    )
    derived = budget.shown(conn, model, plan_budget(found.plan))
    return ShownPlan(found.plan, found.approved_by, found.approved_at, found.sha256, derived)

"""What one model's drift windows are judged with this pass: the monitoring plan in force, and
the α and persistence its false-alarm budget derives at the model's observed volume.

Between the plan (monitor/plan/store.py), the budget (monitor/alerts/budget.py, which records
each new derivation in the audit trail) and the drift scheduler (monitor/drift/scheduler.py),
which asks `RuleBook.for_model` once per model and pass. The plan is read every pass (one
row), so an approval takes effect at the next pass; the volume, which reads four weeks of
events, is measured at most once an hour per model and plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from detectors.drift.suite import DetectorSuite
from detectors.false_alarm_budget import FalseAlarmBudget
from monitor.alerts import budget, lifecycle
from monitor.plan import store
from monitor.plan.document import Budget

REFRESH = timedelta(hours=1)


@dataclass(frozen=True)
class Rules:
    alpha: float
    policy: lifecycle.AlertPolicy
    window: int  # studies per window
    plan_version: str
    signals: frozenset[str] = frozenset()  # the plan's: others are tested but never alert
    strata: frozenset[str] = frozenset()  # stratum kinds the plan watches (the whole model always)

    def watches(self, kind: str, signal: str) -> bool:
        """Does the plan watch this stratum kind and signal? (The online detector is the
        reference's, switched on at build.)"""
        in_strata = kind == "all" or not self.strata or kind in self.strata
        return in_strata and (signal == "online" or not self.signals or signal in self.signals)


@dataclass
class RuleBook:
    """Rules per model for one scheduler; `alpha` / `policy` / `window` fix them (tests, CLI)."""

    fallback: FalseAlarmBudget  # the settings' budget, used by the default plan
    actor: str
    window: int | None = None
    alpha: float | None = None
    policy: lifecycle.AlertPolicy | None = None
    _cache: dict[tuple[str, int, str], tuple[datetime, Rules]] = field(default_factory=dict)

    def for_model(self, conn: psycopg.Connection, model: str, reference_id: int,
                  suite: DetectorSuite) -> Rules:  # fmt: skip
        fallback = Budget(incidents=self.fallback.incidents, days=self.fallback.days)
        found = store.in_force(conn, model, budget=fallback)
        key, now = (model, reference_id, found.sha256), datetime.now(UTC)
        cached = self._cache.get(key)
        if cached and now - cached[0] < REFRESH:
            return cached[1]
        plan = found.plan
        # An approved plan's window size governs; the default plan keeps the reference's own.
        size = self.window or (
            suite.config.calibration_window if found.is_default else plan.windows.drift
        )
        b = plan.false_alarm_budget
        derived = budget.current(conn, model, FalseAlarmBudget(b.incidents, b.days),
                                 actor=self.actor, drift_window=size,
                                 performance_window=plan.windows.performance,
                                 online=suite.online is not None)  # fmt: skip
        conn.commit()
        rules = Rules(
            alpha=self.alpha if self.alpha is not None else derived.drift.alpha,
            policy=self.policy or lifecycle.AlertPolicy(
                open_after=derived.drift.open_after, resolve_after=derived.drift.resolve_after),
            window=size, plan_version=plan.version, signals=frozenset(plan.signals),
            strata=frozenset(plan.strata),
        )  # fmt: skip
        self._cache[key] = (now, rules)
        return rules

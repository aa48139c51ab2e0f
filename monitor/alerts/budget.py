"""The false-alarm budget per model: its observed volume, the settings derived, and their record.

Between the settings (monitor/config.py `budget_incidents`, `budget_days`) and detection: the
drift scheduler (monitor/drift/scheduler.py) and the performance watch (monitor/performance/
watch.py) call `current` at the start of each model's pass and run with the α, persistence
and CUSUM ARL0 it returns. The arithmetic is pure (detectors/false_alarm_budget.py); here are
the volume query, the stored derivation (false_alarm_budgets) and its audit row
(budget.derived, with the previous settings), written only when the settings change.
`radwatch budget show` prints what is stored.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from detectors.false_alarm_budget import Derivation, FalseAlarmBudget, derive
from monitor.audit import trail
from monitor.plan import store
from monitor.plan.document import Budget
from monitor.store.volume import observed_volume


def current(
    conn: psycopg.Connection,
    model: str,
    budget: FalseAlarmBudget,
    *,
    actor: str,
    drift_window: int = 200,
    performance_window: int = 500,
    online: bool = False,
) -> Derivation:
    """The model's derivation at its observed volume; stored and audited when its settings
    differ from the stored one (in the caller's transaction if it has one)."""
    found = derive(budget, observed_volume(conn, model), drift_window=drift_window,
                   performance_window=performance_window, online=online)  # fmt: skip
    doc = _budget_doc(budget)
    with conn.transaction():
        # The audit lock first, then the row, as every audited writer does (trail.record
        # takes it): two passes deriving for one model cannot deadlock on each other.
        trail.lock(conn)
        prev = conn.execute(
            """SELECT budget, settings FROM false_alarm_budgets WHERE model_name = %s
               FOR UPDATE""",
            (model,),
        ).fetchone()
        if prev and prev[0] == doc and prev[1] == _jsonable(found.settings()):
            return found
        conn.execute(
            """INSERT INTO false_alarm_budgets (model_name, budget, settings, derivation)
               VALUES (%s, %s, %s, %s) ON CONFLICT (model_name) DO UPDATE
               SET budget = EXCLUDED.budget, settings = EXCLUDED.settings,
                   derivation = EXCLUDED.derivation, derived_at = now()""",
            (model, Jsonb(doc), Jsonb(_jsonable(found.settings())),
             Jsonb(_jsonable(found.as_dict()))),
        )  # fmt: skip
        trail.record(conn, actor=actor, action="budget.derived", entity_type="model",
                     entity_id=model, refs={"model": model},
                     detail={"budget": doc, "volume": _jsonable(found.volume.__dict__),
                             "settings": _jsonable(found.settings()),
                             "previous_settings": prev[1] if prev else None,
                             "explanation": found.lines()})  # fmt: skip
    return found


def in_force(conn: psycopg.Connection, model: str, fallback: FalseAlarmBudget) -> FalseAlarmBudget:
    """The budget in force: the approved monitoring plan's, else `fallback` (the settings')."""
    b = store.in_force(conn, model, budget=Budget(incidents=fallback.incidents,
                                                  days=fallback.days)).plan.false_alarm_budget  # fmt: skip
    return FalseAlarmBudget(b.incidents, b.days)


def settings_for(
    conn: psycopg.Connection, model: str, fallback: FalseAlarmBudget
) -> dict[str, Any]:
    """What the budget in force sets (Derivation.settings): the derivation detection recorded
    for it, else one derived now at the observed volume (not recorded: the drift scheduler,
    which knows the window, records it). The performance watch runs with this."""
    found = in_force(conn, model, fallback)
    row = conn.execute(
        "SELECT budget, settings FROM false_alarm_budgets WHERE model_name = %s", (model,)
    ).fetchone()
    if row is not None and row[0] == _budget_doc(found):
        return dict(row[1])
    return _jsonable(derive(found, observed_volume(conn, model)).settings())


def online_ert(
    conn: psycopg.Connection, model: str, budget: FalseAlarmBudget, *, drift_window: int = 200
) -> int:
    """The online detector's expected run time within `budget` at the observed volume
    (`radwatch reference build --online`); it is fixed when the reference is fitted."""
    found = derive(budget, observed_volume(conn, model), drift_window=drift_window, online=True)
    assert found.online_ert is not None  # derive sets it when online
    return found.online_ert


def shown(conn: psycopg.Connection, model: str, budget: FalseAlarmBudget) -> dict[str, Any]:
    """What `radwatch budget show` prints: the derivation detection recorded at its last pass,
    or (before the first, or when `budget` is not the one it ran with: `derived_at` None) the
    one it would record now. Reads only."""
    row = conn.execute(
        """SELECT budget, settings, derivation, derived_at FROM false_alarm_budgets
           WHERE model_name = %s""",
        (model,),
    ).fetchone()
    if row is not None and row[0] == _budget_doc(budget):
        explanation = conn.execute(
            """SELECT detail -> 'explanation' FROM audit_events WHERE action = 'budget.derived'
                 AND entity_id = %s ORDER BY seq DESC LIMIT 1""",
            (model,),
        ).fetchone()
        return {"model": model, "budget": row[0], **row[1], "derivation": row[2],
                "explanation": explanation[0] if explanation else [],
                "derived_at": row[3].isoformat()}  # fmt: skip
    found = derive(budget, observed_volume(conn, model))
    return {"model": model, "budget": _budget_doc(budget), **_jsonable(found.settings()),
            "derivation": _jsonable(found.as_dict()), "explanation": found.lines(),
            "derived_at": None}  # fmt: skip


def _budget_doc(budget: FalseAlarmBudget) -> dict[str, float]:
    return {"incidents": budget.incidents, "days": budget.days}


def _jsonable(value: Any) -> Any:
    """jsonb refuses NaN and infinity; the derivation's bounds can be infinite in principle."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value

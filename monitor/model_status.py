"""Per-model pass status: a model whose detection or performance pass fails is recorded,
not allowed to stop the models after it.

Called by monitor/drift/scheduler.py (Scheduler.run_once) and monitor/performance/watch.py (run) after
each model's pass; writes `model_pass_status` (migration 0007), which /metrics reads, and an
audit row when a model's status changes (failed, recovered), so a failure every interval
does not flood the trail. Only the exception's class name is kept: its message may quote
values.
"""

from __future__ import annotations

import logging
from typing import Literal

import psycopg

from monitor.audit import trail

log = logging.getLogger(__name__)

Component = Literal["drift", "performance"]


def record_pass(
    conn: psycopg.Connection,
    model: str,
    component: Component,
    error: BaseException | None,
    *,
    actor: str,
) -> None:
    """Upsert the model's status and audit a change of status, in one transaction."""
    status = "ok" if error is None else "error"
    error_class = None if error is None else type(error).__name__
    with conn.transaction():
        before = conn.execute(
            "SELECT status FROM model_pass_status WHERE model_name = %s AND component = %s "
            "FOR UPDATE",
            (model, component),
        ).fetchone()
        conn.execute(
            """INSERT INTO model_pass_status (model_name, component, status, error_class,
                   last_run_at, last_ok_at, last_error_at, errors_total)
               VALUES (%(m)s, %(c)s, %(s)s, %(e)s, now(),
                       CASE WHEN %(s)s = 'ok' THEN now() END,
                       CASE WHEN %(s)s = 'error' THEN now() END,
                       CASE WHEN %(s)s = 'error' THEN 1 ELSE 0 END)
               ON CONFLICT (model_name, component) DO UPDATE SET
                   status = EXCLUDED.status, error_class = EXCLUDED.error_class,
                   last_run_at = now(),
                   last_ok_at = coalesce(EXCLUDED.last_ok_at, model_pass_status.last_ok_at),
                   last_error_at = coalesce(EXCLUDED.last_error_at,
                                            model_pass_status.last_error_at),
                   errors_total = model_pass_status.errors_total + EXCLUDED.errors_total""",
            {"m": model, "c": component, "s": status, "e": error_class},
        )
        previous = before[0] if before else None
        if status == "error" and previous != "error":
            trail.record(conn, actor=actor, action=f"{component}.model_failed",
                         entity_type="model", entity_id=model, outcome="failure",
                         reason=error_class)  # fmt: skip
        elif status == "ok" and previous == "error":
            trail.record(conn, actor=actor, action=f"{component}.model_recovered",
                         entity_type="model", entity_id=model)  # fmt: skip


def guarded_failure(
    conn: psycopg.Connection, model: str, component: Component, error: Exception, *, actor: str
) -> None:
    """After a model's pass raised: roll back its partial work, log, record the status."""
    # The failed pass may have left the connection's transaction aborted: start clean.
    conn.rollback()
    log.error("%s pass of model %s failed (%s); the other models go on",
              component, model, type(error).__name__)  # fmt: skip
    try:
        record_pass(conn, model, component, error, actor=actor)
    except psycopg.Error as exc:
        conn.rollback()
        log.error("status of model %s not recorded (%s)", model, type(exc).__name__)

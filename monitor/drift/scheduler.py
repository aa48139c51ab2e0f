"""The detection scheduler: evaluate every due window, feed online detectors, drive alerts.

Between stored inferences (monitor/drift/windows.py), the fitted reference (monitor/drift/reference.py)
and the alert lifecycle (monitor/alerts/lifecycle.py), behind `radwatch detect [--once]`. What
fires and why is decided by pure functions (monitor/drift/decisions.py); this module reads the
due windows, stores results and feeds the decisions to the lifecycle. Exactly one
scheduler is active: it holds a session-level PostgreSQL advisory lock on a dedicated
connection (pg_try_advisory_lock); another one finds it taken and waits or exits.
Each window's results, decision audit row, alert changes and cursor move commit together.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from detectors.drift.contract import ALL
from detectors.drift.results import DriftResult, Status
from detectors.drift.suite import DetectorSuite, StratumVerdict
from detectors.false_alarm_budget import FalseAlarmBudget
from monitor import model_status
from monitor.alerts import lifecycle
from monitor.audit import trail
from monitor.drift import decisions, reference
from monitor.drift.rules import RuleBook, Rules
from monitor.drift.windows import EventRow, WindowSpec, fetch_events, next_window, to_sample
from monitor.errors import RadwatchError
from monitor.store import db

log = logging.getLogger(__name__)

SCHEDULER_LOCK = 0x7264_6465_7465_6374  # "rddetect": one active detection scheduler
ONLINE_SIGNAL = "online"
ONLINE_BATCH = 1000
ONSET_LOOKBACK = 5  # windows searched for the change point when an alert opens


class DetectionError(RadwatchError):
    """Detection cannot proceed (e.g. another scheduler holds the lock)."""


@dataclass(frozen=True)
class DetectionConfig:
    max_span: timedelta = timedelta(days=7)
    window_size: int | None = None  # None: the reference's calibration window size
    # The false-alarm budget sets each model's α and persistence at its observed volume
    # (monitor/drift/rules.py): an approved monitoring plan's budget, else this one (the
    # settings'); `alpha` / `policy` given here override it (tests, a replay).
    budget: FalseAlarmBudget = field(default_factory=FalseAlarmBudget)
    alpha: float | None = None
    policy: lifecycle.AlertPolicy | None = None
    flush: bool = False  # also evaluate a trailing partial window (end of a demo stream)
    top_k: int = 3
    # Events later than now + this are not fed to the online detector yet (see _online); the
    # collector's own bound (event_max_future_hours) refuses them at the edge too.
    future_tolerance: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class WindowOutcome:
    model: str
    seq: int
    start: datetime
    end: datetime
    n_events: int
    drift_score: float
    firing: tuple[tuple[str, str, str], ...]  # (stratum kind, value, signal)
    changes: tuple[lifecycle.AlertChange, ...]


@dataclass
class DetectionRun:
    windows: list[WindowOutcome] = field(default_factory=list)
    online_firings: list[tuple[str, str, datetime]] = field(default_factory=list)
    changes: list[lifecycle.AlertChange] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # models whose pass raised


class Scheduler:
    """One detection scheduler; `run_once` needs the advisory lock (`acquire`)."""

    def __init__(self, database_url: str, config: DetectionConfig | None = None,
                 actor: str = "radwatch-detect") -> None:  # fmt: skip
        self.url = database_url
        self.config = config or DetectionConfig()
        self.actor = actor
        self._lock_conn: psycopg.Connection | None = None
        self._suites: dict[str, tuple[int, reference.ReferenceInfo, DetectorSuite]] = {}
        self.rules = RuleBook(self.config.budget, actor, window=self.config.window_size,
                              alpha=self.config.alpha, policy=self.config.policy)  # fmt: skip

    def acquire(self) -> bool:
        """Take the scheduler lock on a dedicated connection; False when another holds it."""
        if self._lock_conn is not None:
            return True
        conn = db.connect(self.url, autocommit=True)
        got = conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEDULER_LOCK,)).fetchone()
        if not (got and got[0]):
            conn.close()
            return False
        self._lock_conn = conn
        return True

    def release(self) -> None:
        if self._lock_conn is not None:
            try:
                self._lock_conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEDULER_LOCK,))
            finally:
                self._lock_conn.close()
                self._lock_conn = None

    def __enter__(self) -> Scheduler:
        if not self.acquire():
            raise DetectionError("another detection scheduler holds the lock")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def run_once(self) -> DetectionRun:
        if self._lock_conn is None:
            raise DetectionError("run_once needs the scheduler lock (call acquire first)")
        run = DetectionRun()
        with db.connect(self.url) as conn:
            for model in reference.models_with_reference(conn):
                # Each model is judged in isolation: a broken reference or state of one model
                # is recorded as its error status and the models after it still run. A lost
                # database is no model's fault: it ends the pass (retried next interval).
                try:
                    loaded = self._suite(conn, model)
                    if loaded is None:
                        continue
                    info, suite = loaded
                    rules = self.rules.for_model(conn, model, info.id, suite)
                    self._online(conn, model, info, suite, rules, run)
                    self._windows(conn, model, info, suite, rules, run)
                except psycopg.OperationalError:
                    raise
                except Exception as exc:
                    self._suites.pop(model, None)  # reload it from the database next pass
                    log.debug("drift pass of model %s failed", model, exc_info=True)
                    model_status.guarded_failure(conn, model, "drift", exc, actor=self.actor)
                    run.failed.append(model)
                    continue
                model_status.record_pass(conn, model, "drift", None, actor=self.actor)
                conn.commit()
        return run

    def run_forever(self, interval: float, stop: threading.Event) -> None:
        while not stop.is_set():
            run = self.run_once()
            if run.windows or run.online_firings:
                log.info("evaluated %d windows, %d online firings, %d alert changes",
                         len(run.windows), len(run.online_firings), len(run.changes))  # fmt: skip
            stop.wait(interval)

    # --- loading -------------------------------------------------------------------------

    def _suite(
        self, conn: psycopg.Connection, model: str
    ) -> tuple[reference.ReferenceInfo, DetectorSuite] | None:
        row = conn.execute(
            "SELECT id FROM drift_references WHERE model_name = %s AND active", (model,)
        ).fetchone()
        if row is None:
            return None
        cached = self._suites.get(model)
        if cached and cached[0] == row[0]:
            return cached[1], cached[2]
        loaded = reference.active(conn, model)
        if loaded is None:
            return None
        info, suite = loaded
        if suite.online is not None:
            state = conn.execute(
                "SELECT state FROM drift_online_state WHERE reference_id = %s AND detector = %s",
                (info.id, suite.online.name),
            ).fetchone()
            if state:
                suite.online.load_state(bytes(state[0]))
        self._suites[model] = (info.id, info, suite)
        return info, suite

    # --- online detectors ----------------------------------------------------------------

    def _online(self, conn: psycopg.Connection, model: str, info: reference.ReferenceInfo,
                suite: DetectorSuite, rules: Rules, run: DetectionRun) -> None:  # fmt: skip
        if suite.online is None:
            return
        while True:
            cur = conn.execute(
                "SELECT online_at, online_event_id FROM drift_cursors WHERE model_name = %s",
                (model,),
            ).fetchone()
            assert cur is not None  # created with the reference
            # The cursor follows occurred_at, so an event dated beyond now + tolerance (a
            # year-9999 typo) would carry it past every later event: such events wait until
            # their time is plausible, and never move the cursor before then.
            horizon = datetime.now(UTC) + self.config.future_tolerance
            rows = fetch_events(conn, model, after=(cur[0], cur[1]), limit=ONLINE_BATCH,
                                until=horizon, embedder=info.embedder_fingerprint)  # fmt: skip
            if not rows:
                return
            updates = suite.online.update(to_sample(rows))
            # update() skips events without the online features; map back by position.
            usable = _online_usable(suite, rows)
            with conn.transaction():
                for upd, row in zip(updates, usable, strict=True):
                    if not upd.fired:
                        continue
                    conn.execute(
                        """INSERT INTO drift_online_events (reference_id, model_name, detector,
                               event_id, occurred_at, t, statistic, threshold)
                           VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                        (info.id, model, upd.detector, row.event_id, row.occurred_at, upd.t,
                         _num(upd.statistic), _num(upd.threshold)),
                    )  # fmt: skip
                    details = {"signal": ONLINE_SIGNAL, "stratum": "all=all",
                               "detector": upd.detector, "event_time": row.occurred_at,
                               "run_length": upd.t, "statistic": _num(upd.statistic),
                               "threshold": _num(upd.threshold),
                               "expected_run_time": suite.config.online_ert,
                               "atypical_ids": [row.study],
                               "reference_id": info.id, "reference_hash": info.content_hash,
                               "detector_fingerprint": info.detector_fingerprint}  # fmt: skip
                    change = lifecycle.observe(
                        conn, model=model, stratum_kind="all", stratum_value="all",
                        signal=ONLINE_SIGNAL, firing=True, immediate=True, details=details,
                        window_end=row.occurred_at, actor=self.actor, policy=rules.policy,
                        enrich=_constant({"onset": row.occurred_at}),
                    )  # fmt: skip
                    run.online_firings.append((model, upd.detector, row.occurred_at))
                    if change:
                        run.changes.append(change)
                conn.execute(
                    """INSERT INTO drift_online_state (reference_id, detector, t, state)
                       VALUES (%s, %s, %s, %s) ON CONFLICT (reference_id, detector) DO UPDATE
                       SET t = EXCLUDED.t, state = EXCLUDED.state, updated_at = now()""",
                    (info.id, suite.online.name, int(suite.online.detector.t),
                     suite.online.save_state()),
                )  # fmt: skip
                conn.execute(
                    """UPDATE drift_cursors SET online_at = %s, online_event_id = %s,
                           updated_at = now() WHERE model_name = %s""",
                    (rows[-1].occurred_at, rows[-1].event_id, model),
                )
            if len(rows) < ONLINE_BATCH:
                return

    # --- windows -------------------------------------------------------------------------

    def _windows(self, conn: psycopg.Connection, model: str, info: reference.ReferenceInfo,
                 suite: DetectorSuite, rules: Rules, run: DetectionRun) -> None:  # fmt: skip
        size = rules.window
        spec = WindowSpec(size=size, max_span=self.config.max_span)
        while True:
            cur = conn.execute(
                """SELECT window_seq, window_at, window_event_id FROM drift_cursors
                   WHERE model_name = %s""",
                (model,),
            ).fetchone()
            seq, after = int(cur[0]), (cur[1], cur[2])  # type: ignore[index]
            rows = fetch_events(conn, model, after=after, limit=size,
                                embedder=info.embedder_fingerprint)  # fmt: skip
            window = next_window(rows, spec, flush=self.config.flush)
            if window is None:
                return
            outcome = self._evaluate(conn, model, info, suite, rules, seq + 1, window.rows,
                                     window.closed_by)  # fmt: skip
            run.windows.append(outcome)
            run.changes.extend(outcome.changes)

    def _evaluate(self, conn: psycopg.Connection, model: str, info: reference.ReferenceInfo,
                  suite: DetectorSuite, rules: Rules, seq: int, rows: tuple[EventRow, ...],
                  closed_by: str) -> WindowOutcome:  # fmt: skip
        verdicts, window_decisions = decisions.decide(suite, rows, seq, alpha=rules.alpha)
        start, end = rows[0].occurred_at, rows[-1].occurred_at
        whole = next((v for v in verdicts if (v.kind, v.value) == ALL), None)
        unified = whole.drift_score if whole else math.nan
        version = _most_common([r.model_version for r in rows])
        firing: list[tuple[str, str, str]] = []
        changes: list[lifecycle.AlertChange] = []
        with conn.transaction():
            window_id = conn.execute(
                """INSERT INTO drift_windows (model_name, reference_id, seq, window_start,
                       window_end, first_event_id, last_event_id, n_events, closed_by,
                       unified_score)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id""",
                (model, info.id, seq, start, end, rows[0].event_id, rows[-1].event_id,
                 len(rows), closed_by, _num(unified)),
            ).fetchone()[0]  # type: ignore[index]  # fmt: skip
            for v in verdicts:
                self._store(conn, window_id, model, version, info, rules.alpha, v, start, end)
            online_fired = conn.execute(
                """SELECT count(*) FROM drift_online_events WHERE reference_id = %s
                     AND occurred_at BETWEEN %s AND %s""",
                (info.id, start, end),
            ).fetchone()[0]  # type: ignore[index]
            if suite.online is not None:
                window_decisions.append(("all", "all", ONLINE_SIGNAL, bool(online_fired), []))
            # What the plan does not watch is tested and stored, but opens no alert.
            window_decisions = [d for d in window_decisions if rules.watches(d[0], d[2])]
            for kind, value, signal, fire, results in window_decisions:
                if fire:
                    firing.append((kind, value, signal))
                verdict = next(v for v in verdicts if (v.kind, v.value) == (kind, value)) \
                    if results else None  # fmt: skip
                details = lifecycle.audit_safe(decisions.alert_details(
                    kind, value, signal, results, verdict, info, start, end, self.config.top_k,
                    decisions.summaries(suite, (kind, value), results),
                    alpha=rules.alpha)) if results else {
                    "signal": signal, "stratum": f"{kind}={value}", "window_end": end,
                    "online_firings_in_window": int(online_fired)}  # fmt: skip
                change = lifecycle.observe(
                    conn, model=model, stratum_kind=kind, stratum_value=value, signal=signal,
                    firing=fire, details=details, window_end=end, actor=self.actor,
                    policy=rules.policy, immediate=signal == ONLINE_SIGNAL,
                    enrich=functools.partial(self._onset, conn, model, info, suite, rules, seq,
                                             kind, value, results, end) if results else None,
                )  # fmt: skip
                if change:
                    changes.append(change)
            conn.execute("UPDATE drift_windows SET firing = %s WHERE id = %s",
                         (Jsonb([list(f) for f in firing]), window_id))  # fmt: skip
            trail.record(
                conn, actor=self.actor, action="drift.window", entity_type="drift_window",
                entity_id=str(window_id), outcome="drift" if firing else "ok",
                entity_version=info.detector_fingerprint,
                refs={"model": model, "reference_id": info.id,
                      "reference_hash": info.content_hash,
                      "detector_fingerprint": info.detector_fingerprint},
                detail={"seq": seq, "n_events": len(rows), "window_start": start.isoformat(),
                        "window_end": end.isoformat(), "closed_by": closed_by,
                        "unified_score": _num(unified),
                        "firing": [f"{k}={v}:{s}" for k, v, s in firing],
                        "alert_changes": [f"{c.action}:{c.alert_id}" for c in changes]},
            )  # fmt: skip
            conn.execute(
                """UPDATE drift_cursors SET window_seq = %s, window_at = %s, window_event_id = %s,
                       updated_at = now() WHERE model_name = %s""",
                (seq, end, rows[-1].event_id, model),
            )
        return WindowOutcome(model, seq, start, end, len(rows), unified, tuple(firing),
                             tuple(changes))  # fmt: skip

    def _store(self, conn: psycopg.Connection, window_id: int, model: str, version: str | None,
               info: reference.ReferenceInfo, alpha: float, v: StratumVerdict,
               start: datetime, end: datetime) -> None:  # fmt: skip
        with conn.cursor().copy(
            """COPY drift_results (window_id, model_name, model_version, reference_id,
                   reference_hash, detector, detector_fingerprint, signal, feature, test,
                   stratum_kind, stratum_value, status, p_value, p_adjusted, statistic,
                   threshold, effect_size, drift, unified_score, n_reference, n_window,
                   window_start, window_end, details) FROM STDIN"""
        ) as copy:
            for r in v.results:
                common = (window_id, model, version, info.id, info.content_hash, r.detector,
                          info.detector_fingerprint, r.signal)  # fmt: skip
                tested = r.status in (Status.OK, Status.DRIFT)
                copy.write_row((*common, "", None, v.kind, v.value, r.status.value,
                                _num(r.p_value), _num(r.adjusted_p), _num(r.statistic),
                                _num(r.threshold), _num(r.effect_size),
                                (r.status == Status.DRIFT) if tested else None,
                                _num(v.drift_score), r.n_reference, r.n_window, start, end,
                                Jsonb(lifecycle.audit_safe({"message": r.message,
                                                         "atypical_ids": list(r.atypical_ids)}))))  # fmt: skip
                for f in r.features:
                    drift = f.adjusted_p is not None and f.adjusted_p < alpha
                    copy.write_row((*common, f.feature, f.test, v.kind, v.value,
                                    (Status.DRIFT if drift else Status.OK).value,
                                    _num(f.p_value), _num(f.adjusted_p), _num(f.statistic),
                                    None, _num(f.effect_size), drift, _num(v.drift_score),
                                    r.n_reference, r.n_window, start, end,
                                    Jsonb(lifecycle.audit_safe(f.as_dict()))))  # fmt: skip

    def _onset(self, conn: psycopg.Connection, model: str, info: reference.ReferenceInfo,
               suite: DetectorSuite, rules: Rules, seq: int, kind: str, value: str,
               results: list[DriftResult], end: datetime) -> dict[str, Any]:  # fmt: skip
        """The onset of an opening alert: this stratum's events since the window before the
        firing ones, read from the database, dated by a change point (decisions.onset)."""
        back = max(rules.policy.open_after, ONSET_LOOKBACK - 1)
        row = conn.execute(
            """SELECT min(window_start) FROM drift_windows
               WHERE reference_id = %s AND seq >= %s AND seq < %s""",
            (info.id, seq - back, seq),
        ).fetchone()
        since = row[0] if row and row[0] else None
        rows = fetch_events(conn, model, since=since, until=end,
                            embedder=info.embedder_fingerprint)  # fmt: skip
        rows = [r for r in rows if since is not None or r.occurred_at <= end]
        sample = to_sample(rows)
        mask = sample.stratum_mask(kind, value)
        times = [r.occurred_at for r, m in zip(rows, mask, strict=True) if m]
        return decisions.onset(suite, (kind, value), results, sample.take(mask), times)


def _online_usable(suite: DetectorSuite, rows: list[EventRow]) -> list[EventRow]:
    x = suite.online._columns(to_sample(rows))
    return [r for r, ok in zip(rows, np.isfinite(x).all(1), strict=True) if ok]


def _constant(value: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    return lambda: value


def _most_common(values: list[str | None]) -> str | None:
    vals = [v for v in values if v]
    return max(set(vals), key=vals.count) if vals else None


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None

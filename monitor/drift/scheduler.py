"""The detection scheduler: evaluate every due window, feed online detectors, drive alerts.

Between stored inferences (monitor/drift/windows.py), the fitted reference (monitor/drift/reference.py)
and the alert lifecycle (monitor/alerts/lifecycle.py), behind `radwatch detect [--once]`. Exactly one
scheduler is active: it holds a session-level PostgreSQL advisory lock on a dedicated
connection (pg_try_advisory_lock); another one finds it taken and waits or exits.
Each window's results, decision audit row, alert changes and cursor move commit together.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from detectors.drift import changepoint
from detectors.drift.contract import ALL, DetectorSuite, Sample, StratumVerdict
from detectors.drift.results import DriftResult, FeatureFinding, Status
from monitor import model_status
from monitor.alerts import lifecycle
from monitor.audit import trail
from monitor.drift import reference
from monitor.drift.windows import EventRow, WindowSpec, fetch_events, next_window, to_sample
from monitor.store import db

log = logging.getLogger(__name__)

SCHEDULER_LOCK = 0x7264_6465_7465_6374  # "rddetect": one active detection scheduler
ONLINE_SIGNAL = "online"
ONLINE_BATCH = 1000
CONCENTRATION = 1.25  # a stratum alert needs this × the model-wide effect
ONSET_LOOKBACK = 5  # windows searched for the change point when an alert opens


class DetectionError(Exception):
    """Detection cannot proceed (e.g. another scheduler holds the lock)."""


@dataclass(frozen=True)
class DetectionConfig:
    max_span: timedelta = timedelta(days=7)
    window_size: int | None = None  # None: the reference's calibration window size
    policy: lifecycle.AlertPolicy = field(default_factory=lifecycle.AlertPolicy)
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
                    self._online(conn, model, info, suite, run)
                    self._windows(conn, model, info, suite, run)
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
                suite: DetectorSuite, run: DetectionRun) -> None:  # fmt: skip
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
                        window_end=row.occurred_at, actor=self.actor, policy=self.config.policy,
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
                 suite: DetectorSuite, run: DetectionRun) -> None:  # fmt: skip
        size = self.config.window_size or suite.config.calibration_window
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
            outcome = self._evaluate(conn, model, info, suite, seq + 1, window.rows,
                                     window.closed_by)  # fmt: skip
            run.windows.append(outcome)
            run.changes.extend(outcome.changes)

    def _evaluate(self, conn: psycopg.Connection, model: str, info: reference.ReferenceInfo,
                  suite: DetectorSuite, seq: int, rows: tuple[EventRow, ...],
                  closed_by: str) -> WindowOutcome:  # fmt: skip
        verdicts, window_decisions = decide(suite, rows, seq)
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
                self._store(conn, window_id, model, version, info, suite, v, start, end)
            online_fired = conn.execute(
                """SELECT count(*) FROM drift_online_events WHERE reference_id = %s
                     AND occurred_at BETWEEN %s AND %s""",
                (info.id, start, end),
            ).fetchone()[0]  # type: ignore[index]
            if suite.online is not None:
                window_decisions.append(("all", "all", ONLINE_SIGNAL, bool(online_fired), []))
            for kind, value, signal, fire, results in window_decisions:
                if fire:
                    firing.append((kind, value, signal))
                verdict = next(v for v in verdicts if (v.kind, v.value) == (kind, value)) \
                    if results else None  # fmt: skip
                details = _alert_details(kind, value, signal, results, verdict, info, start,
                                         end, self.config.top_k,
                                         summaries(suite, (kind, value), results),
                                         ) if results else {
                    "signal": signal, "stratum": f"{kind}={value}", "window_end": end,
                    "online_firings_in_window": int(online_fired)}  # fmt: skip
                change = lifecycle.observe(
                    conn, model=model, stratum_kind=kind, stratum_value=value, signal=signal,
                    firing=fire, details=details, window_end=end, actor=self.actor,
                    policy=self.config.policy, immediate=signal == ONLINE_SIGNAL,
                    enrich=functools.partial(self._onset, conn, model, info, suite, seq, kind,
                                             value, results, end) if results else None,
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
               info: reference.ReferenceInfo, suite: DetectorSuite, v: StratumVerdict,
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
                    drift = f.adjusted_p is not None and f.adjusted_p < suite.config.alpha
                    copy.write_row((*common, f.feature, f.test, v.kind, v.value,
                                    (Status.DRIFT if drift else Status.OK).value,
                                    _num(f.p_value), _num(f.adjusted_p), _num(f.statistic),
                                    None, _num(f.effect_size), drift, _num(v.drift_score),
                                    r.n_reference, r.n_window, start, end,
                                    Jsonb(lifecycle.audit_safe(f.as_dict()))))  # fmt: skip

    def _onset(self, conn: psycopg.Connection, model: str, info: reference.ReferenceInfo,
               suite: DetectorSuite, seq: int, kind: str, value: str,
               results: list[DriftResult], end: datetime) -> dict[str, Any]:  # fmt: skip
        """Change point over the firing windows and the one before them (Hinkley 1970)."""
        back = max(self.config.policy.open_after, ONSET_LOOKBACK - 1)
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
        part = sample.take(mask)
        times = [r.occurred_at for r, m in zip(rows, mask, strict=True) if m]
        series = indicator(suite, (kind, value), results, part)
        if series is None or len(series) < 10:
            return {}
        cp = changepoint.mean_shift(series)
        if cp is None:
            return {}
        return {"onset": times[cp.index], "onset_statistic": round(cp.statistic, 3),
                "onset_before_mean": cp.before_mean, "onset_after_mean": cp.after_mean,
                "onset_series": _series_name(results)}  # fmt: skip


def indicator(suite: DetectorSuite, key: tuple[str, str], results: list[DriftResult],
              part: Sample) -> np.ndarray | None:  # fmt: skip
    """Per-study number for the change point, from the most significant finding.

    The detector that produced the finding says what that number is (WindowDetector.indicator):
    a new test gets an onset without any change here.
    """
    fitted = suite.strata.get(key)
    if fitted is None or not results:
        return None
    best = min(results, key=lambda r: r.adjusted_p if r.adjusted_p is not None else 1.0)
    detector = next((d for d in fitted.detectors if d.name == best.detector), None)
    return None if detector is None else detector.indicator(part, best)


def _series_name(results: list[DriftResult]) -> str:
    best = min(results, key=lambda r: r.adjusted_p if r.adjusted_p is not None else 1.0)
    top = best.top_features(1)
    return f"{best.detector}:{top[0].feature}" if top else best.detector


Decision = tuple[str, str, str, bool, list[DriftResult]]  # kind, value, signal, firing, tests


def decide(
    suite: DetectorSuite, rows: Sequence[EventRow], seq: int
) -> tuple[list[StratumVerdict], list[Decision]]:
    """One window's verdicts and its firing decisions per stratum × signal (pure)."""
    verdicts = suite.score(to_sample(rows), seed=seq)
    return verdicts, localise(decisions(verdicts), verdicts)


def decisions(verdicts: list[StratumVerdict]) -> list[Decision]:
    """(kind, value, signal, firing, results) for each stratum × signal that was tested.

    A signal whose tests all lacked data neither fires nor counts as quiet.
    """
    out = []
    for v in verdicts:
        by_signal: dict[str, list[DriftResult]] = defaultdict(list)
        for r in v.results:
            if r.status in (Status.OK, Status.DRIFT):
                by_signal[r.signal].append(r)
        for signal, results in sorted(by_signal.items()):
            fire = any(r.status == Status.DRIFT for r in results)
            out.append((v.kind, v.value, signal, fire, results))
    return out


def localise(decisions: list[tuple[str, str, str, bool, list[DriftResult]]],
             verdicts: list[StratumVerdict]) -> list[tuple[str, str, str, bool, list[DriftResult]]]:  # fmt: skip
    """Keep a stratum's firing only where the shift is concentrated.

    A shift at one site also moves every other stratum that contains that site's studies
    (sex, age band, …). A stratum-level firing is kept only where the stratum's unified drift
    score exceeds the whole model's and, when the whole model fires for the same signal,
    where the shift is clearly larger than model-wide (effect ×1.25), so the QA team gets "south-clinic", not every subgroup that merely contains
    south-clinic studies; the whole-model alert always stands.
    """
    whole = {signal: (fire, strength(results)) for kind, value, signal, fire, results
             in decisions if (kind, value) == ALL}  # fmt: skip
    scores = {(v.kind, v.value): v.drift_score for v in verdicts}
    whole_score = scores.get(ALL, math.nan)
    out = []
    for kind, value, signal, fire, results in decisions:
        whole_fire, whole_strength = whole.get(signal, (False, 0.0))
        if fire and (kind, value) != ALL:
            if math.isfinite(whole_score):
                fire = scores.get((kind, value), math.nan) > whole_score
            if whole_fire:
                fire = fire and strength(results) > CONCENTRATION * whole_strength
        out.append((kind, value, signal, fire, results))
    return out


def strength(results: list[DriftResult]) -> float:
    """Size of a signal's shift, comparable across sample sizes: the largest feature effect
    (KS D, Cramér's V, share of never-seen values) or MMD² itself (not its z-score)."""
    values = [f.effect_size for r in results for f in r.features] + [
        r.statistic for r in results if not r.features
    ]
    finite = [abs(v) for v in values if v is not None and math.isfinite(v)]
    return max(finite, default=0.0)


def summaries(suite: DetectorSuite, key: tuple[str, str],
              results: list[DriftResult]) -> dict[str, str]:  # fmt: skip
    """The one-line readings whole-signal tests give of their results (WindowDetector.summary)."""
    fitted = suite.strata.get(key)
    by_name = {d.name: d for d in fitted.detectors} if fitted else {}
    out: dict[str, str] = {}
    for r in results:
        detector = by_name.get(r.detector)
        text = detector.summary(r) if detector is not None else None
        if text:
            out[r.detector] = text
    return out


def _alert_details(kind: str, value: str, signal: str, results: list[DriftResult],
                   verdict: StratumVerdict | None, info: reference.ReferenceInfo,
                   start: datetime, end: datetime, top_k: int,
                   test_summaries: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """What the QA team reads: what moved, where, how much, examples."""
    test_summaries = test_summaries or {}
    top = [{"feature": f.feature, "test": f.test, "reference": f.reference,
            "current": f.current, "p_value": f.p_value, "adjusted_p": f.adjusted_p,
            "effect_size": f.effect_size, "new_values": list(f.new_values),
            "summary": _summary(f)} for f in top_features(results, top_k)]  # fmt: skip
    atypical: list[str] = []
    for r in sorted(results, key=lambda r: r.adjusted_p if r.adjusted_p is not None else 1):
        atypical += [i for i in r.atypical_ids if i not in atypical]
    return lifecycle.audit_safe({
        "signal": signal,
        "stratum": f"{kind}={value}",
        "window_start": start, "window_end": end,
        "n_window": verdict.n_window if verdict else None,
        "drift_score": verdict.drift_score if verdict else None,
        "tests": [{"detector": r.detector, "p_value": r.p_value, "adjusted_p": r.adjusted_p,
                   "effect_size": r.effect_size, "statistic": r.statistic,
                   "n_reference": r.n_reference, "n_window": r.n_window,
                   "status": r.status.value, "summary": test_summaries.get(r.detector)}
                  for r in results],
        "top_features": top,
        "atypical_ids": atypical[:5],
        "reference_id": info.id, "reference_hash": info.content_hash,
        "detector_fingerprint": info.detector_fingerprint,
    })  # fmt: skip


def top_features(results: Sequence[DriftResult], k: int) -> list[FeatureFinding]:
    """The features an alert leads with: smallest adjusted p, then largest effect."""
    return sorted(
        (f for r in results for f in r.features),
        key=lambda f: (f.adjusted_p if f.adjusted_p is not None else 1.0, -abs(f.effect_size)),
    )[:k]


def _summary(f: Any) -> str:
    if f.test in ("chi2", "new_value"):
        ref = f.reference.split(": ", 1)[-1]
        return f"{f.feature}: {f.current}, {ref}"
    return f"{f.feature}: {f.current} vs {f.reference} in reference (KS D={f.statistic:.2f})"


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

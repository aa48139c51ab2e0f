"""radwatch from Python: references, windows, alerts and incidents as pandas DataFrames.

For notebooks, beside the services and the CLI, over the same engine: offline, a DataFrame
of inference events (the columns collection stores: `EVENT_COLUMNS`) becomes a reference
fitted as `radwatch reference build` fits one (detectors/drift/fitting.py), and a later
DataFrame is cut into windows, judged at the false-alarm budget's α, and its alerts and
incidents formed exactly as `radwatch detect` does (the scheduler's pure steps, replayed by
monitor/drift/replay.py: windows.next_window, decisions.decide, lifecycle.step,
grouping.choose / assess) — no Kafka, no PostgreSQL. Online, `connect` reads the running
system's references, drift results, alerts, incidents and performance into the same shapes,
and renders the model report. Nothing here computes a statistic of its own; the reshaping
is monitor/api/frames.py.

    from monitor import api
    ref = api.build_reference(history)          # a DataFrame, or a parquet path
    scoring = api.score(ref, this_week)         # results, windows, alerts, incidents
    scoring.results.query("drift == True")      # one row per window × stratum × test/feature
    api.incidents(scoring)                      # what the QA team would be told

Errors are one line: a bad frame is a `FrameError` (a ValueError) naming the column.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import psycopg

from detectors.drift import fitting
from detectors.drift.suite import DetectorSuite, SuiteConfig
from detectors.errors import DetectorError
from detectors.false_alarm_budget import Derivation, FalseAlarmBudget, derive
from monitor.alerts.lifecycle import AlertPolicy
from monitor.api import frames
from monitor.api.frames import (
    ALERT_COLUMNS,
    EVENT_COLUMNS,
    INCIDENT_COLUMNS,
    PERFORMANCE_COLUMNS,
    REFERENCE_COLUMNS,
    RESULT_COLUMNS,
    ApiError,
    FrameError,
)
from monitor.drift import replay
from monitor.drift.reference import ReferenceInfo
from monitor.drift.windows import CATEGORICAL_ATTRIBUTES, stratum_values, to_sample

if TYPE_CHECKING:
    from monitor.config import Settings

__all__ = [
    "ALERT_COLUMNS", "EVENT_COLUMNS", "INCIDENT_COLUMNS", "PERFORMANCE_COLUMNS",
    "REFERENCE_COLUMNS", "RESULT_COLUMNS", "ApiError", "Database", "FrameError", "Reference",
    "Scoring", "build_reference", "connect", "incidents", "score", "simulate",
]  # fmt: skip

DEFAULT_MODEL = "model"
MAX_SPAN = timedelta(days=7)  # a window also closes after this (the scheduler's default)


# --- offline --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Reference:
    """A frozen reference: the detector suite fitted on it, and what alerts cite of it."""

    model: str
    suite: DetectorSuite
    info: ReferenceInfo  # id 0: not stored; content_hash over its event ids
    times: tuple[datetime, ...]  # its studies' times (the budget's volume counts them)

    @property
    def n_events(self) -> int:
        return len(self.times)

    @property
    def end(self) -> datetime:
        return max(self.times)

    @property
    def strata(self) -> pd.DataFrame:
        """The strata fitted (kind, value, n_reference: studies in the fit part)."""
        return pd.DataFrame([(k, v, s.n_reference) for (k, v), s in self.suite.strata.items()],
                            columns=["stratum_kind", "stratum_value", "n_reference"])  # fmt: skip


@dataclass(frozen=True, eq=False)
class Scoring:
    """What detection made of a DataFrame of studies against a reference.

    `results`: RESULT_COLUMNS, one row per window × stratum × test and per feature;
    `windows`: one row per window (window, window_start, window_end, n_events,
    unified_score, firing); `alerts`: ALERT_COLUMNS; `incidents`: INCIDENT_COLUMNS.
    """

    model: str
    results: pd.DataFrame
    windows: pd.DataFrame
    alerts: pd.DataFrame
    incidents: pd.DataFrame
    alpha: float  # the level the windows were judged at
    policy: AlertPolicy  # open after k firing windows, resolve after m quiet ones
    window_size: int
    derivation: Derivation = field(repr=False)  # how the budget gave α and k


def build_reference(
    data: pd.DataFrame | str | os.PathLike[str],
    *,
    model: str = DEFAULT_MODEL,
    config: SuiteConfig | None = None,
) -> Reference:
    """Freeze `data` (EVENT_COLUMNS; a DataFrame or a parquet path) as a reference and fit
    every detector on it per stratum, as `radwatch reference build` does."""
    rows = frames.rows_from_frame(frames.read_events(data))
    config = config or SuiteConfig()
    if len(rows) < config.min_reference:
        raise FrameError(f"the reference has {len(rows)} studies; at least "
                         f"{config.min_reference} are needed")  # fmt: skip
    try:
        suite = fitting.fit_suite(to_sample(rows), config,
                                  categorical_attributes=CATEGORICAL_ATTRIBUTES)  # fmt: skip
    except DetectorError as exc:
        raise ApiError(f"fitting detectors on the reference failed: {exc}") from exc
    counts: dict[str, Counter[str]] = {}
    for r in rows:
        for kind, value in stratum_values(r).items():
            counts.setdefault(kind, Counter())[str(value)] += 1
    digest = hashlib.sha256("\n".join(sorted(r.event_id for r in rows)).encode()).hexdigest()
    info = ReferenceInfo(0, model, len(rows), digest, suite.fingerprint, None,
                         {k: dict(c.most_common()) for k, c in counts.items()}, {})  # fmt: skip
    return Reference(model, suite, info, tuple(r.occurred_at for r in rows))


def score(
    reference: Reference,
    data: pd.DataFrame | str | os.PathLike[str],
    *,
    alpha: float | None = None,
    open_after: int | None = None,
    resolve_after: int | None = None,
    window: int | None = None,
    max_span: timedelta = MAX_SPAN,
    budget: FalseAlarmBudget | None = None,
) -> Scoring:
    """Judge `data` (EVENT_COLUMNS) against `reference`, window by window and per stratum,
    and form the alerts and incidents `radwatch detect` would.

    As the scheduler under the default monitoring plan: windows of the reference's
    calibration window size (`window` to change it), closed early after `max_span`; α and
    persistence derived from the false-alarm `budget` (default: 1 false incident per 90
    days) at the volume of the reference and `data` together, as the stored inferences
    would be measured; `alpha`, `open_after` and `resolve_after` override them.
    """
    if not isinstance(reference, Reference):
        raise ApiError(f"expected a Reference from build_reference, not {type(reference).__name__}")
    rows = frames.rows_from_frame(frames.read_events(data))
    suite = reference.suite
    size = window or suite.config.calibration_window
    if size <= 0:
        raise ApiError(f"window must be a positive number of studies, not {size}")
    derived = derive(budget or FalseAlarmBudget(),
                     frames.volume([*reference.times, *(r.occurred_at for r in rows)]),
                     drift_window=size, online=suite.online is not None)  # fmt: skip
    policy = AlertPolicy(open_after or derived.drift.open_after,
                         resolve_after or derived.drift.resolve_after)  # fmt: skip
    level = derived.drift.alpha if alpha is None else alpha
    settings = replay.Settings(level, policy, size, max_span)
    judged = replay.judge(suite, rows, alpha=level, window=size, max_span=max_span)
    if not judged:
        raise FrameError(f"{len(rows)} studies make no complete window of {size} "
                         f"(nor one closed by a span of {max_span})")  # fmt: skip
    # The replayer keeps which alerts the quiet windows resolved; Replay carries only opens.
    replayer = replay._Replayer(suite, settings, reference.info)
    found = replayer.run(judged)
    resolved = {found.alerts[i].facts.id for i in replayer.resolved}
    firing = {w.seq: [f"{k}={v}:{s}" for (k, v, s), _ in w.firing] for w in found.windows}
    windows = pd.DataFrame(
        [(w.seq, w.start, w.end, len(w.rows),
          next((frames._num(v.drift_score) for v in w.verdicts if v.kind == "all"), None),
          firing.get(w.seq, [])) for w in judged],
        columns=["window", "window_start", "window_end", "n_events", "unified_score", "firing"],
    )  # fmt: skip
    return Scoring(reference.model, frames.results_frame(judged, level), windows,
                   frames.alerts_frame(found, reference.model, resolved),
                   frames.incidents_frame(found, reference.model, resolved), level, policy,
                   size, derived)  # fmt: skip


def incidents(scoring: Scoring) -> pd.DataFrame:
    """The incidents a scoring's alerts form (INCIDENT_COLUMNS), oldest first."""
    return scoring.incidents


def simulate(
    n: int, *, scenario: str = "none", onset: int = 0, seed: int = 0, severity: float = 0.5
) -> pd.DataFrame:
    """`n` studies of the synthetic hospital as collection would store them (EVENT_COLUMNS):
    each study rendered, scored by the deployed CNN, read by radwatch's DICOM reader and
    embedded by the default encoder (monitor/pilot/simulated_rows.py). `scenario`
    (collectors/simulator/scenarios.py) changes the studies from index `onset` on."""
    from collectors.simulator.scenarios import SCENARIOS
    from monitor.pilot.simulated_rows import ScenarioStreams, rows_of

    if scenario not in SCENARIOS:
        raise ApiError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if n <= 0 or onset < 0:
        raise ApiError("n must be positive and onset not negative")
    with ScenarioStreams(severity=severity, onset=onset, workers=1) as streams:
        rows = rows_of(streams.streams(scenario, [seed], n)[seed])
    return frames.frame_from_rows(rows)


# --- online ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database:
    """The running system's PostgreSQL, read-only (`connect`); each call opens and closes one
    connection. Models default to all."""

    url: str = field(repr=False)  # may hold a password: never shown
    settings: Settings | None = field(default=None, repr=False)

    def references(self, model: str | None = None) -> pd.DataFrame:
        """Frozen references (REFERENCE_COLUMNS), oldest first."""
        return self._query(
            """SELECT id, model_name, created_at, created_by, n_events, n_fit, n_holdout,
                      period_from, period_to, first_n, content_hash, detector_fingerprint, active
               FROM drift_references WHERE %(model)s::text IS NULL OR model_name = %(model)s
               ORDER BY created_at, id""", {"model": model}, list(REFERENCE_COLUMNS))  # fmt: skip

    def drift_results(self, model: str | None = None, *, since: datetime | None = None,
                      until: datetime | None = None) -> pd.DataFrame:  # fmt: skip
        """Stored drift results (RESULT_COLUMNS, with model and reference_id), in window
        order; `since` / `until` bound the windows' ends."""
        cols = ["model", "reference_id", *RESULT_COLUMNS]
        return self._query(
            """SELECT r.model_name, r.reference_id, w.seq, r.window_start, r.window_end,
                      r.stratum_kind, r.stratum_value, r.signal, r.detector, r.feature, r.test,
                      r.status, r.p_value, r.p_adjusted, r.statistic, r.threshold,
                      r.effect_size, r.drift, r.unified_score, r.n_reference, r.n_window
               FROM drift_results r JOIN drift_windows w ON w.id = r.window_id
               WHERE (%(model)s::text IS NULL OR r.model_name = %(model)s)
                 AND (%(since)s::timestamptz IS NULL OR r.window_end >= %(since)s)
                 AND (%(until)s::timestamptz IS NULL OR r.window_end <= %(until)s)
               ORDER BY r.model_name, r.reference_id, w.seq, r.id""",
            {"model": model, "since": since, "until": until}, cols)  # fmt: skip

    def alerts(self, model: str | None = None, *, state: str | None = None) -> pd.DataFrame:
        """Alerts (ALERT_COLUMNS less `window`, plus who acknowledged and resolved them and
        when), oldest first; `state`: open, acknowledged or resolved."""
        from monitor.alerts import incidents, lifecycle

        with self._connect() as conn:
            found = lifecycle.list_alerts(conn, state=state, model=model)
            owner = {a: i.id for i in incidents.list_incidents(conn, all=True, model=model)
                     for a in i.alerts}  # fmt: skip
        rows = []
        for a in found:
            opened = a.details.get("window_end")  # the opening window's, as stored
            doc = {
                **a.__dict__,
                "incident": owner.get(a.id),
                "window_end": pd.Timestamp(opened) if opened else None,
                "top_features": [
                    str(f.get("feature"))
                    for f in a.details.get("top_features", [])
                    if isinstance(f, dict)
                ],
            }
            rows.append(doc)
        columns = [c for c in ALERT_COLUMNS if c != "window"]
        extra = [k for k in (rows[0] if rows else {}) if k not in columns]
        return pd.DataFrame(rows, columns=[*columns, *extra] if rows else columns)

    def incidents(self, model: str | None = None, *, all: bool = True) -> pd.DataFrame:
        """Incidents (INCIDENT_COLUMNS, plus their acknowledgement, resolution, plan clause,
        stop rule and governance decision), oldest first; `all=False`: unresolved only."""
        from monitor.alerts import incidents

        with self._connect() as conn:
            found = incidents.list_incidents(conn, all=all, model=model)
        rows = [{**i.__dict__, "alerts": list(i.alerts)} for i in found]
        extra = [k for k in (rows[0] if rows else {}) if k not in INCIDENT_COLUMNS]
        return pd.DataFrame(rows, columns=[*INCIDENT_COLUMNS, *extra])

    def performance(self, model: str | None = None) -> pd.DataFrame:
        """Realised and estimated performance per window and stratum (PERFORMANCE_COLUMNS)."""
        return self._query(
            """SELECT model_name, finding, window_kind, window_index, window_start, window_end,
                      stratum_kind, stratum_value, metric, status, n_inferences, n_labelled,
                      realised, realised_lower, realised_upper, estimated, estimated_lower,
                      estimated_upper, reference_value, degradation_p, degraded
               FROM performance_results
               WHERE %(model)s::text IS NULL OR model_name = %(model)s
               ORDER BY model_name, finding, window_kind, window_index, stratum_kind,
                        stratum_value, metric""", {"model": model}, list(PERFORMANCE_COLUMNS))  # fmt: skip

    def render_report(self, model: str, out: str | os.PathLike[str], *,
                      start: datetime | None = None, end: datetime | None = None,
                      include_evidently: bool = True) -> Path:  # fmt: skip
        """Write `model`'s report (what `radwatch report` writes) to `out` (HTML)."""
        from monitor.config import load_settings
        from monitor.reports.writing import write_report

        settings = self.settings or load_settings().replace(database_url=self.url)
        return self._guard(lambda: write_report(self.url, settings, model, Path(out), start=start,
                                                end=end, include_evidently=include_evidently))  # fmt: skip

    def _query(self, sql: str, params: dict[str, Any], columns: Sequence[str]) -> pd.DataFrame:
        with self._connect() as conn:
            return frames.query(conn, sql, params, columns)

    def _connect(self) -> psycopg.Connection:
        from monitor.store import db

        return self._guard(lambda: db.connect(self.url))

    def _guard(self, call: Any) -> Any:
        from monitor.store import db

        try:
            return call()
        except psycopg.OperationalError as exc:
            raise ApiError(db.describe(exc).message) from None


def connect(target: str | Settings | None = None) -> Database:
    """The running system's database: a PostgreSQL URL, a `Settings` (monitor/config.py), or
    nothing (the RADWATCH_* environment, as the CLI reads it). Reads only; starts nothing."""
    from monitor.config import Settings, load_settings
    from monitor.store import db

    if target is None or isinstance(target, Settings):
        from monitor.services.runtime import resolve_endpoints

        settings = target or load_settings()
        url = resolve_endpoints(settings, read_only=True, broker=False).database_url
        return Database(url, settings)
    if not isinstance(target, str):
        raise ApiError(f"connect takes a database URL or Settings, not {type(target).__name__}")
    db.check_url(target)
    return Database(target)

"""DataFrames in and out of detection's own types: the adapters under monitor/api/.

At the notebook edge of the data flow. In: a pandas DataFrame (or a parquet file) with the
columns an inference event carries after collection becomes the `EventRow`s that
monitor/drift/windows.py `fetch_events` returns from PostgreSQL, so detection runs on it
unchanged. Out: judged windows, opened alerts and incidents (monitor/drift/replay.py) become
DataFrames whose columns are the stored tables' (drift_results, alerts, incidents), and the
running system's tables are read into the same shapes. No statistics here: only reshaping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence, Set
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from collectors.dicom_tags import CATEGORICAL, NUMERIC, SPACING
from detectors.drift.results import Status
from detectors.false_alarm_budget import Volume
from monitor.drift.replay import JudgedWindow, Replay
from monitor.drift.windows import EventRow
from monitor.errors import RadwatchError
from monitor.store.volume import ASSUMED_PER_DAY, MIN_EVENTS, MIN_SPAN, VOLUME_SPAN, two_figures

SCORE_PREFIX, THRESHOLD_PREFIX = "score_", "threshold_"
# DICOM keywords accepted as columns of their own (merged into `dicom`): the attributes
# collection keeps (collectors/dicom_tags.py) and the normalised age band.
DICOM_COLUMNS = frozenset(CATEGORICAL + NUMERIC + SPACING + ("AgeBand",))

# The input frame: one row per inference, as collection stores it (the `inferences` table,
# joined to the default encoder's vector and the image-quality features).
EVENT_COLUMNS: Mapping[str, str] = {
    "occurred_at": "required; when the study was read by the model (timezone-aware; naive: UTC)",
    "scores": "dict finding -> score (or one `score_<finding>` column per finding); required",
    "event_id": "unique id of the inference (default: the row's position)",
    "study": "pseudonymised study id (default: event_id); alerts cite it among atypical studies",
    "site": "site name (a stratum)",
    "model_version": "the deployed model's version",
    "dicom": "dict DICOM keyword -> value (or one column per keyword, e.g. `Manufacturer`)",
    "thresholds": "dict finding -> operating point (or `threshold_<finding>` columns)",
    "embedding": "the model's embedding, an array per row",
    "image_vector": "the default encoder's embedding of the image, an array per row",
    "image_features": "dict of image-quality features (detectors/embedding/image_features.py)",
}

# The results frame: one row per window × stratum × test, and one per feature of a test
# (feature '' is the test as a whole): the columns of the drift_results table.
RESULT_COLUMNS: Mapping[str, str] = {
    "window": "window number (1 = the first window after the reference)",
    "window_start": "first study's time", "window_end": "last study's time",
    "stratum_kind": "all, site, scanner, view, sex or age_band",
    "stratum_value": "the stratum (all for the whole model)",
    "signal": "what moved: scores, model_embedding, image_embedding, image_quality, "
              "acquisition, ...",
    "detector": "the test, e.g. mmd:model_embedding, ks:scores",
    "feature": "the feature ('' for the test as a whole)",
    "test": "the feature's test (ks, chi2, new_value); None for the test as a whole",
    "status": "ok, drift, insufficient_data or error",
    "p_value": "the test's p-value", "p_adjusted": "after the window's weighted BH",
    "statistic": "the test statistic", "threshold": "the test's threshold, when it has one",
    "effect_size": "KS D, Cramér's V, share of never-seen values, or MMD² standardised",
    "drift": "p_adjusted < α (None when not tested)",
    "unified_score": "the stratum's unified drift score",
    "n_reference": "reference studies of the stratum", "n_window": "window studies of the stratum",
}  # fmt: skip
ALERT_COLUMNS: Mapping[str, str] = {
    "id": "alert id", "model": "model name", "stratum_kind": "where", "stratum_value": "where",
    "signal": "what moved", "state": "open, acknowledged or resolved",
    "opened_at": "when it opened (offline: its window's end; online: when it was stored)",
    "window_end": "end of the window it opened at (event time)",
    "onset": "estimated change point (event time)",
    "window": "the window it opened at (offline only)", "incident": "its incident's id",
    "top_features": "the features it leads with", "details": "what the QA team reads (dict)",
}  # fmt: skip
INCIDENT_COLUMNS: Mapping[str, str] = {
    "id": "incident id", "model": "model name", "state": "open, acknowledged or resolved",
    "root_cause": "kind=value of the most specific stratum", "shift_type": "acquisition, "
    "population, prevalence, integration, performance or unknown",
    "summary": "the statement", "recommended_action": "what to do",
    "onset": "the earliest onset of its alerts", "opened_at": "when its first alert opened",
    "alerts": "its alerts' ids",
}  # fmt: skip


class ApiError(RadwatchError, ValueError):
    """What the Python API refuses or cannot do, on one line (monitor/api/)."""


class FrameError(ApiError):
    """A DataFrame or file that cannot be read as inference events; names the column."""


# --- in ------------------------------------------------------------------------------------


def read_events(data: pd.DataFrame | str | os.PathLike[str]) -> pd.DataFrame:
    """`data` itself, or the parquet file it names."""
    if isinstance(data, pd.DataFrame):
        return data
    if not isinstance(data, str | os.PathLike):
        raise FrameError(
            f"expected a pandas DataFrame or a parquet path, not {type(data).__name__}"
        )
    path = Path(data)
    if not path.is_file():
        raise FrameError(f"no parquet file at {path}")
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise FrameError(
            f"reading {path.name} needs a parquet engine: {_first_line(exc)}"
        ) from None
    except (OSError, ValueError) as exc:
        raise FrameError(
            f"{path.name} is not a readable parquet file: {_first_line(exc)}"
        ) from None


def rows_from_frame(frame: pd.DataFrame) -> list[EventRow]:
    """The frame's rows as detection reads them, in stream order (occurred_at, event_id)."""
    columns = [str(c) for c in frame.columns]
    unknown = [c for c in columns if c not in EVENT_COLUMNS and c not in DICOM_COLUMNS
               and not c.startswith((SCORE_PREFIX, THRESHOLD_PREFIX))]  # fmt: skip
    if unknown:
        raise FrameError(f"unknown column {unknown[0]!r} (accepted: "
                         f"{', '.join(EVENT_COLUMNS)}, score_*, threshold_*, DICOM keywords)")  # fmt: skip
    if "occurred_at" not in columns:
        raise FrameError("missing column 'occurred_at' (when each study was read by the model)")
    score_cols = [c for c in columns if c.startswith(SCORE_PREFIX)]
    if "scores" not in columns and not score_cols:
        raise FrameError("missing column 'scores' (a dict per row, or score_<finding> columns)")
    if frame.empty:
        raise FrameError("the DataFrame has no rows")
    times = _times(frame["occurred_at"])
    records = frame.to_dict("records")
    rows = []
    for i, (rec, at) in enumerate(zip(records, times, strict=True)):
        eid = _text(rec, "event_id", i) or str(i)
        dicom = _mapping(rec, "dicom", i)
        dicom.update({k: _plain(rec[k]) for k in DICOM_COLUMNS & rec.keys() if _present(rec[k])})
        scores = _mapping(rec, "scores", i)
        scores.update({c.removeprefix(SCORE_PREFIX): _number(rec, c, i) for c in score_cols
                       if _present(rec[c])})  # fmt: skip
        thresholds = _mapping(rec, "thresholds", i)
        thresholds.update({c.removeprefix(THRESHOLD_PREFIX): _number(rec, c, i) for c in columns
                           if c.startswith(THRESHOLD_PREFIX) and _present(rec[c])})  # fmt: skip
        rows.append(EventRow(
            eid, at, _text(rec, "study", i) or eid, _text(rec, "site", i),
            _text(rec, "model_version", i), dicom, scores, _vector(rec, "embedding", i),
            _vector(rec, "image_vector", i), _mapping(rec, "image_features", i) or None,
            thresholds or None,
        ))  # fmt: skip
    if len({r.event_id for r in rows}) != len(rows):
        raise FrameError("column 'event_id' has repeated values (each inference once)")
    return sorted(rows, key=lambda r: (r.occurred_at, r.event_id))


def frame_from_rows(rows: Sequence[EventRow]) -> pd.DataFrame:
    """Rows as the input frame (the nested columns of EVENT_COLUMNS): `rows_from_frame`'s
    inverse, so a frame read from the running system scores offline unchanged."""
    return pd.DataFrame({
        "event_id": [r.event_id for r in rows],
        "occurred_at": pd.to_datetime([r.occurred_at for r in rows], utc=True),
        "study": [r.study for r in rows], "site": [r.site for r in rows],
        "model_version": [r.model_version for r in rows], "dicom": [r.dicom for r in rows],
        "scores": [r.scores for r in rows], "thresholds": [r.thresholds for r in rows],
        "embedding": [_array(r.embedding) for r in rows],
        "image_vector": [_array(r.image_vector) for r in rows],
        "image_features": [r.image_features for r in rows],
    })  # fmt: skip


def volume(times: Sequence[datetime]) -> Volume:
    """Studies a day over the last VOLUME_SPAN of event time, measured as monitor/store/
    volume.py measures the stored inferences (the false-alarm budget's input); offline there
    are no labels, so labelled studies a day are 0."""
    if not times:
        return Volume(ASSUMED_PER_DAY, 0.0, "assumed: no studies")
    last = max(times)
    recent = [t for t in times if t > last - VOLUME_SPAN]
    if len(recent) < MIN_EVENTS:
        return Volume(ASSUMED_PER_DAY, 0.0,
                      f"assumed: only {len(recent)} studies (fewer than {MIN_EVENTS})")  # fmt: skip
    days = max(last - min(recent), MIN_SPAN) / timedelta(days=1)
    return Volume(two_figures(len(recent) / days), 0.0,
                  f"{len(recent):,} studies over {days:.3g} days of event time")  # fmt: skip


def _times(column: pd.Series) -> list[datetime]:
    try:
        values = pd.to_datetime(column)
    except (ValueError, TypeError) as exc:
        raise FrameError(f"column 'occurred_at' is not a time: {_first_line(exc)}") from None
    if values.isna().any():
        raise FrameError(f"column 'occurred_at' is empty at row {int(values.isna().argmax())}")
    if values.dt.tz is None:
        values = values.dt.tz_localize(UTC)
    return [t.to_pydatetime() for t in values.dt.tz_convert(UTC)]


def _present(value: Any) -> bool:
    if value is None:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    """numpy and parquet values as the JSON PostgreSQL returns: lists, floats, no nulls."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items() if _present(v)}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _text(rec: Mapping[str, Any], name: str, i: int) -> str | None:
    value = rec.get(name)
    if not _present(value):
        return None
    if not isinstance(value, str | int | np.integer):
        raise FrameError(f"column {name!r} must hold text, not {type(value).__name__} (row {i})")
    return str(value)


def _mapping(rec: Mapping[str, Any], name: str, i: int) -> dict[str, Any]:
    value = rec.get(name)
    if not _present(value):
        return {}
    if not isinstance(value, Mapping):
        raise FrameError(f"column {name!r} must hold a dict per row, not "
                         f"{type(value).__name__} (row {i})")  # fmt: skip
    return dict(_plain(value))


def _number(rec: Mapping[str, Any], name: str, i: int) -> float:
    value = rec[name]
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise FrameError(f"column {name!r} must hold numbers, not {type(value).__name__} (row {i})")
    return float(value)


def _vector(rec: Mapping[str, Any], name: str, i: int) -> list[float] | None:
    value = rec.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise FrameError(
            f"column {name!r} must hold an array of numbers per row (row {i})"
        ) from None
    if array.ndim != 1:
        raise FrameError(f"column {name!r} must hold one flat array per row (row {i})")
    # PostgreSQL stores vectors as real[] (float32): the same values as the running system.
    return [float(v) for v in array]


def _array(vector: list[float] | None) -> np.ndarray | None:
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- out: offline ---------------------------------------------------------------------------


def results_frame(windows: Sequence[JudgedWindow], alpha: float) -> pd.DataFrame:
    """Every judged window's verdicts as the scheduler stores them (its `_store`: one row per
    test, one per feature), with `window` the window's number."""
    out: list[dict[str, Any]] = []
    for w in windows:
        for v in w.verdicts:
            common = {"window": w.seq, "window_start": w.start, "window_end": w.end,
                      "stratum_kind": v.kind, "stratum_value": v.value}  # fmt: skip
            for r in v.results:
                tested = r.status in (Status.OK, Status.DRIFT)
                out.append({**common, "signal": r.signal, "detector": r.detector, "feature": "",
                            "test": None, "status": r.status.value, "p_value": _num(r.p_value),
                            "p_adjusted": _num(r.adjusted_p), "statistic": _num(r.statistic),
                            "threshold": _num(r.threshold), "effect_size": _num(r.effect_size),
                            "drift": (r.status == Status.DRIFT) if tested else None,
                            "unified_score": _num(v.drift_score),
                            "n_reference": r.n_reference, "n_window": r.n_window})  # fmt: skip
                for f in r.features:
                    drift = f.adjusted_p is not None and f.adjusted_p < alpha
                    out.append({**common, "signal": r.signal, "detector": r.detector,
                                "feature": f.feature, "test": f.test,
                                "status": (Status.DRIFT if drift else Status.OK).value,
                                "p_value": _num(f.p_value), "p_adjusted": _num(f.adjusted_p),
                                "statistic": _num(f.statistic), "threshold": None,
                                "effect_size": _num(f.effect_size), "drift": drift,
                                "unified_score": _num(v.drift_score),
                                "n_reference": r.n_reference, "n_window": r.n_window})  # fmt: skip
    return _frame(out, RESULT_COLUMNS)


def alerts_frame(found: Replay, model: str, resolved: Set[int]) -> pd.DataFrame:
    """The alerts a replay opened, as the alerts table holds them; `resolved`: the ids of
    those the quiet windows that followed resolved (the lifecycle's hysteresis)."""
    rows = [{"id": a.facts.id, "model": model, "stratum_kind": a.facts.stratum_kind,
             "stratum_value": a.facts.stratum_value, "signal": a.facts.signal,
             "state": "resolved" if a.facts.id in resolved else "open",
             "opened_at": a.opened_at, "window_end": a.opened_at, "onset": a.facts.onset,
             "window": a.seq,
             "incident": a.incident + 1, "top_features": list(a.lead),
             "details": dict(a.facts.details)} for a in found.alerts]  # fmt: skip
    return _frame(rows, ALERT_COLUMNS)


def incidents_frame(found: Replay, model: str, resolved: Set[int]) -> pd.DataFrame:
    """The replay's incidents (grouping.choose / grouping.assess, as monitor/alerts/incidents.py
    forms them); resolved when all their alerts are."""
    rows = [{"id": n + 1, "model": model,
             "state": "resolved" if all(a in resolved for a in i.alerts) else "open",
             "root_cause": i.assessment.root_cause, "shift_type": i.shift_type,
             "summary": i.assessment.summary,
             "recommended_action": i.assessment.recommended_action,
             "onset": i.assessment.onset, "opened_at": i.opened_at, "alerts": list(i.alerts)}
            for n, i in enumerate(found.incidents)]  # fmt: skip
    return _frame(rows, INCIDENT_COLUMNS)


def _frame(rows: list[dict[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# --- out: online ----------------------------------------------------------------------------

REFERENCE_COLUMNS: Mapping[str, str] = {
    "id": "reference id", "model": "model name", "created_at": "when it was frozen",
    "created_by": "who froze it", "n_events": "studies", "n_fit": "fitted on",
    "n_holdout": "held out for calibration", "period_from": "period (when built from one)",
    "period_to": "period (when built from one)", "first_n": "first N (when built so)",
    "content_hash": "SHA-256 over its members", "detector_fingerprint": "suite configuration",
    "active": "the one detection uses",
}  # fmt: skip
PERFORMANCE_COLUMNS: Mapping[str, str] = {
    "model": "model name", "finding": "the score's finding", "window_kind": "reference, "
    "count:N, day or week", "window_index": "window number", "window_start": "first study",
    "window_end": "last study", "stratum_kind": "all, site, scanner, sex, age_band",
    "stratum_value": "the stratum", "metric": "auroc, sensitivity, specificity, ...",
    "status": "ok, insufficient_data, ...", "n_inferences": "studies", "n_labelled": "with a read",
    "realised": "from radiologists' reads", "realised_lower": "95% interval",
    "realised_upper": "95% interval", "estimated": "label-free estimate (CBPE)",
    "estimated_lower": "interval", "estimated_upper": "interval",
    "reference_value": "the reference's value", "degradation_p": "one-sided p of a drop",
    "degraded": "significant drop",
}  # fmt: skip


def query(conn: psycopg.Connection, sql: str, params: Mapping[str, Any],
          columns: Sequence[str]) -> pd.DataFrame:  # fmt: skip
    """A read-only query's rows as a DataFrame with `columns`."""
    rows = conn.execute(sql, dict(params)).fetchall()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))

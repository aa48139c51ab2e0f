"""Count-based, time-bounded windows of stored inferences, turned into detector samples.

Between PostgreSQL (inferences, plus issue 4's embeddings / image_features when present)
and detectors/: events are read in (occurred_at, event_id) order, cut into windows of
`size` events (default 200) that also close when they would span more than `max_span`,
and converted to a `detectors.drift.contract.Sample` with the strata (site, scanner, view, sex, age band).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from collectors.dicom_tags import CATEGORICAL, NUMERIC
from detectors.drift.contract import CALL_PREFIX, Sample

# DICOM attributes tested as categories; PatientSex and AgeBand (the normalised PatientAge)
# are strata and categories, so a never-seen age band (children at an adult service) is a
# finding of its own.
CATEGORICAL_ATTRIBUTES = tuple(CATEGORICAL) + ("AgeBand",)
NUMERIC_ATTRIBUTES = tuple(NUMERIC) + ("PixelSpacing",)


@dataclass(frozen=True)
class WindowSpec:
    size: int = 200
    max_span: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class EventRow:
    event_id: str
    occurred_at: datetime
    study: str
    site: str | None
    model_version: str | None
    dicom: dict[str, Any]
    scores: dict[str, Any]
    embedding: list[float] | None
    image_vector: list[float] | None
    image_features: dict[str, Any] | None
    thresholds: dict[str, Any] | None = None


@dataclass(frozen=True)
class Window:
    rows: tuple[EventRow, ...]
    closed_by: str  # 'count' | 'time'

    @property
    def start(self) -> datetime:
        return self.rows[0].occurred_at

    @property
    def end(self) -> datetime:
        return self.rows[-1].occurred_at


def _has_table(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def fetch_events(
    conn: psycopg.Connection,
    model: str,
    *,
    after: tuple[datetime, str] | None = None,
    until: datetime | None = None,
    since: datetime | None = None,
    limit: int | None = None,
    event_ids: Sequence[str] | None = None,
    embedder: str | None = None,
) -> list[EventRow]:
    """Inferences of a model in stream order, joined to the default encoder's vector and
    the image-quality features when those tables exist (issue 4)."""
    emb = _has_table(conn, "embeddings") and embedder is not None
    feats = _has_table(conn, "image_features")
    sql = f"""
        SELECT i.event_id, i.occurred_at, i.study_pseudo, i.site, i.model_version, i.dicom,
               i.scores, i.embedding,
               {"e.vector" if emb else "NULL::real[]"},
               {"f.features" if feats else "NULL::jsonb"}, i.thresholds
        FROM inferences i
        {"LEFT JOIN embeddings e ON e.image_ref = i.image_ref AND e.embedder_fingerprint = %(embedder)s" if emb else ""}
        {"LEFT JOIN image_features f ON f.image_ref = i.image_ref" if feats else ""}
        WHERE i.model_name = %(model)s
          AND (%(after_at)s::timestamptz IS NULL OR (i.occurred_at, i.event_id) > (%(after_at)s, %(after_id)s))
          AND (%(since)s::timestamptz IS NULL OR i.occurred_at >= %(since)s)
          AND (%(until)s::timestamptz IS NULL OR i.occurred_at <= %(until)s)
          AND (%(ids)s::text[] IS NULL OR i.event_id = ANY(%(ids)s))
        ORDER BY i.occurred_at, i.event_id
        {"LIMIT %(limit)s" if limit else ""}
    """  # noqa: E501
    params = {
        "model": model, "after_at": after[0] if after else None,
        "after_id": after[1] if after else None, "since": since, "until": until,
        "ids": list(event_ids) if event_ids is not None else None, "limit": limit,
        "embedder": embedder,
    }  # fmt: skip
    return [EventRow(*r) for r in conn.execute(sql, params).fetchall()]


def next_window(
    rows: Sequence[EventRow], spec: WindowSpec, *, flush: bool = False
) -> Window | None:
    """The first complete window of `rows` (events after the cursor, in order), or None.

    Complete: `size` events, or fewer when the next event falls beyond start + max_span
    (the window is closed in time). With `flush`, a trailing partial window is returned too.
    """
    if not rows:
        return None
    start = rows[0].occurred_at
    for i, row in enumerate(rows):
        if row.occurred_at - start > spec.max_span:
            return Window(tuple(rows[:i]), "time")
        if i + 1 == spec.size:
            return Window(tuple(rows[: i + 1]), "count")
    return Window(tuple(rows), "flush") if flush else None


def stratum_values(row: EventRow) -> dict[str, str | None]:
    d = row.dicom or {}
    scanner = " ".join(str(d[k]) for k in ("Manufacturer", "ManufacturerModelName") if d.get(k))
    return {
        "site": row.site,
        "scanner": scanner or None,
        "view": d.get("ViewPosition"),
        "sex": d.get("PatientSex"),
        "age_band": d.get("AgeBand"),
    }


def to_sample(rows: Sequence[EventRow]) -> Sample:
    """Column-wise detector input. A signal is present only if some event carries it."""
    n = len(rows)
    vectors: dict[str, np.ndarray] = {}
    for name, get in (("model_embedding", lambda r: r.embedding),
                      ("image_embedding", lambda r: r.image_vector)):  # fmt: skip
        vecs = [get(r) for r in rows]
        dims = {len(v) for v in vecs if v}
        if len(dims) == 1:
            d = dims.pop()
            mat = np.full((n, d), np.nan, dtype=np.float32)
            for i, v in enumerate(vecs):
                if v and len(v) == d:
                    mat[i] = v
            vectors[name] = mat
    scalars: dict[str, dict[str, np.ndarray]] = {}
    scores = _numeric_columns([r.scores or {} for r in rows])
    if scores:
        scalars["scores"] = scores
    quality = _numeric_columns([r.image_features or {} for r in rows])
    if quality:
        scalars["image_quality"] = quality
    acq_dicts = []
    for r in rows:
        tags = r.dicom or {}
        acq = {k: tags[k] for k in NUMERIC if k in tags}
        if isinstance(tags.get("PixelSpacing"), list) and tags["PixelSpacing"]:
            acq["PixelSpacing"] = tags["PixelSpacing"][0]
        acq_dicts.append(acq)
    acquisition = _numeric_columns(acq_dicts)
    if acquisition:
        scalars["acquisition"] = acquisition
    categories = {}
    for attr in CATEGORICAL_ATTRIBUTES:
        col = [(r.dicom or {}).get(attr) for r in rows]
        if any(v is not None for v in col):
            categories[attr] = np.array(col, dtype=object)
    for name, column in _calls(rows).items():
        categories[CALL_PREFIX + name] = column
    strata_rows = [stratum_values(r) for r in rows]
    strata = {
        kind: np.array([s[kind] for s in strata_rows], dtype=object)
        for kind in ("site", "scanner", "view", "sex", "age_band")
    }
    return Sample(tuple(r.study for r in rows), vectors, scalars, categories, strata)


def _calls(rows: Sequence[EventRow]) -> dict[str, np.ndarray]:
    """'positive' / 'negative' per score that has a threshold (None where either is missing).

    The positive-call rate is what a prevalence change or a miscalibrated update moves
    first, and a two-proportion test sees it with far fewer studies than KS on the scores.
    """
    names = sorted({k for r in rows for k in (r.thresholds or {}) if k in (r.scores or {})})
    out = {}
    for name in names:
        col: list[str | None] = []
        for r in rows:
            score: Any = (r.scores or {}).get(name)
            threshold: Any = (r.thresholds or {}).get(name)
            if _is_number(score) and _is_number(threshold):
                col.append("positive" if float(score) >= float(threshold) else "negative")
            else:
                col.append(None)
        out[name] = np.array(col, dtype=object)
    return out


def _numeric_columns(dicts: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = sorted({k for d in dicts for k, v in d.items() if _is_number(v)})
    out = {}
    for k in keys:
        out[k] = np.array(
            [float(d[k]) if _is_number(d.get(k)) else np.nan for d in dicts], dtype=float
        )
    return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)

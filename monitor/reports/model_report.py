"""`radwatch report`: one self-contained HTML file a QA engineer reads in two minutes.

At the reading end of the data flow: reads inferences, labels, stored drift and performance
results, alerts, incidents and their audit history from PostgreSQL for one model and one period
(event time: every section keeps to it), then renders, top to bottom: the verdict paragraph
(monitor/reports/report_verdict.py), one card per incident or alert (report_cards.py), event-
time plots with the reference shaded, thresholds and onsets (report_plots.py), the subgroup
table with intervals and outliers, the most atypical images with captions, and Evidently's
column-by-column drift detail and classification report (report_evidently.py).
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from monitor.alerts.incidents import Incident, list_incidents
from monitor.alerts.lifecycle import Alert, list_alerts
from monitor.errors import RadwatchError
from monitor.store import db

log = logging.getLogger(__name__)

REFERENCE_SIZE = 1000  # the model's first N inferences, as the performance watch's reference
THUMBNAILS = 6
DEFAULT_ALPHA = 0.05  # when neither the budget nor the reference records one (older stores)
STRATA = ("site", "scanner", "sex", "age_band")
NUMERIC_TAGS = ("KVP", "Exposure", "XRayTubeCurrent", "Rows", "Columns", "WindowCenter",
                "WindowWidth")  # fmt: skip
CATEGORICAL_TAGS = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions",
                    "PhotometricInterpretation", "ViewPosition", "PatientSex", "AgeBand")  # fmt: skip
DRIFT_COLUMNS = ("window_start", "window_end", "stratum_kind", "stratum_value", "signal",
                 "p_adjusted", "unified_score")  # fmt: skip
PERFORMANCE_COLUMNS = ("window_start", "window_end", "window_kind", "stratum_kind",
                       "stratum_value", "finding", "metric", "n_labelled", "realised",
                       "realised_lower", "realised_upper", "estimated", "estimated_lower",
                       "estimated_upper", "reference_value")  # fmt: skip
HISTORY_COLUMNS = ("recorded_at", "actor", "action", "entity_type", "entity_id", "reason")


class ReportError(RadwatchError, RuntimeError):
    """The report cannot be made as asked (unknown model, empty period)."""


@dataclass(frozen=True)
class ReportData:
    model: str
    start: datetime | None
    end: datetime | None
    frame: pd.DataFrame  # one row per inference: strata, tags, score_*, label_*, embedding
    findings: tuple[str, ...]
    reference_rows: int
    drift: pd.DataFrame  # DRIFT_COLUMNS: per window × stratum × signal, the period's windows
    performance: pd.DataFrame  # PERFORMANCE_COLUMNS: the period's windows and the reference
    alerts: tuple[Alert, ...]  # those whose event-time span meets the period
    incidents: tuple[Incident, ...]  # those holding one of `alerts`
    history: pd.DataFrame  # HISTORY_COLUMNS: the audit trail of those alerts and incidents
    # alert id → its span in event time: from its onset (else its first firing window's end,
    # as grouping reads it) to its last window's end
    spans: Mapping[int, tuple[datetime, datetime]] = field(default_factory=dict)
    drift_alpha: float = DEFAULT_ALPHA
    performance_alpha: float = DEFAULT_ALPHA
    database_url: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def current(self) -> pd.DataFrame:
        return in_period(self.frame.iloc[self.reference_rows :], self.start, self.end)

    @property
    def reference(self) -> pd.DataFrame:
        return self.frame.iloc[: self.reference_rows]

    @property
    def reference_span(self) -> tuple[datetime, datetime] | None:
        ref = self.reference
        if ref.empty:
            return None
        return ref["occurred_at"].min().to_pydatetime(), ref["occurred_at"].max().to_pydatetime()

    @property
    def period(self) -> tuple[datetime, datetime]:
        """The report's period in event time: as asked, else the stored studies' span."""
        times = self.frame["occurred_at"]
        lo = self.start or times.min().to_pydatetime()
        hi = self.end or times.max().to_pydatetime()
        return lo, hi

    def span(self, a: Alert) -> tuple[datetime, datetime]:
        return self.spans.get(a.id) or (a.onset or a.opened_at, a.last_window_end or a.opened_at)

    def alerts_of(self, incident: Incident) -> list[Alert]:
        return [a for a in self.alerts if a.id in incident.alerts]

    @property
    def loose_alerts(self) -> list[Alert]:
        """Alerts of the period that belong to no incident of the period."""
        held = {a for i in self.incidents for a in i.alerts}
        return [a for a in self.alerts if a.id not in held]


def in_period(frame: pd.DataFrame, start: datetime | None, end: datetime | None,
              column: str = "occurred_at") -> pd.DataFrame:  # fmt: skip
    if start is not None:
        frame = frame[frame[column] >= start]
    if end is not None:
        frame = frame[frame[column] < end]
    return frame


def span_in_period(span: tuple[datetime, datetime], start: datetime | None,
                   end: datetime | None) -> bool:  # fmt: skip
    """Whether an alert's event-time span meets the period [start, end)."""
    first, last = span
    return (end is None or first < end) and (start is None or last >= start)


# -- reading -----------------------------------------------------------------------------------


def _table(conn: psycopg.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any],
           columns: Sequence[str],
           notes: list[str], what: str) -> pd.DataFrame:  # fmt: skip
    """A query whose table belongs to another component: an absent table is a note, not a
    failure (the report says what it could not show)."""
    try:
        with conn.transaction():
            rows = conn.execute(sql, params).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        notes.append(f"{what}: not available in this database ({exc.diag.message_primary}).")
        return pd.DataFrame(columns=list(columns))
    return pd.DataFrame(rows, columns=list(columns))


def load(database_url: str, model: str, start: datetime | None = None,
         end: datetime | None = None) -> ReportData:  # fmt: skip
    notes: list[str] = []
    with db.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT i.occurred_at, i.site, i.dicom, i.scores, i.thresholds, i.image_ref,
                      i.embedding, l.labels, i.study_pseudo
               FROM inferences i
               LEFT JOIN LATERAL (SELECT labels FROM labels lb
                                  WHERE lb.model_name = i.model_name
                                    AND lb.study_pseudo IN (i.study_pseudo,
                                        'accession:' || i.accession_pseudo)
                                  ORDER BY lb.occurred_at DESC, lb.received_at DESC
                                  LIMIT 1) l ON true
               WHERE i.model_name = %s AND (%s::timestamptz IS NULL OR i.occurred_at < %s)
               ORDER BY i.occurred_at, i.event_id""",
            (model, end, end),
        ).fetchall()
        if not rows:
            raise ReportError(f"no inferences stored for model {model!r}")
        frozen = _table(conn,
            """SELECT id, n_events, period_from, first_n, config->>'alpha' FROM drift_references
               WHERE model_name = %s AND active""",
            (model,), ("id", "n_events", "period_from", "first_n", "alpha"), notes,
            "drift reference")  # fmt: skip
        reference_id = int(frozen["id"].iloc[0]) if len(frozen) else None
        drift = _table(conn,
            """SELECT w.window_start, w.window_end, r.stratum_kind, r.stratum_value, r.signal,
                      min(r.p_adjusted), max(r.unified_score)
               FROM drift_results r JOIN drift_windows w ON w.id = r.window_id
               WHERE r.model_name = %(m)s AND r.feature = '' AND r.status IN ('ok', 'drift')
                 AND (%(ref)s::bigint IS NULL OR r.reference_id = %(ref)s)
                 AND (%(s)s::timestamptz IS NULL OR w.window_end >= %(s)s)
                 AND (%(e)s::timestamptz IS NULL OR w.window_end < %(e)s)
               GROUP BY 1, 2, 3, 4, 5 ORDER BY 2""",
            {"m": model, "ref": reference_id, "s": start, "e": end}, DRIFT_COLUMNS, notes,
            "drift results")  # fmt: skip
        performance = _table(conn,
            """SELECT window_start, window_end, window_kind, stratum_kind, stratum_value,
                      finding, metric, n_labelled, realised, realised_lower, realised_upper,
                      estimated, estimated_lower, estimated_upper, reference_value
               FROM performance_results
               WHERE model_name = %(m)s AND metric IN ('auroc', 'sensitivity', 'specificity')
                 AND (window_kind = 'reference'
                      OR ((%(s)s::timestamptz IS NULL OR window_end >= %(s)s)
                          AND (%(e)s::timestamptz IS NULL OR window_end < %(e)s)))
               ORDER BY window_end""",
            {"m": model, "s": start, "e": end}, PERFORMANCE_COLUMNS, notes,
            "performance results")  # fmt: skip
        budget = _table(conn,
            "SELECT settings FROM false_alarm_budgets WHERE model_name = %s", (model,),
            ("settings",), notes, "false-alarm budget")  # fmt: skip
        alerts, incidents, history, spans = _workflow(conn, model, start, end, notes)
    frame = _frame(rows)
    findings = tuple(sorted({k for r in rows for k in (r[3] or {})}))
    if len(frozen) and frozen["period_from"].isna().all() and len(frame) > 1:
        # The frozen drift reference (`reference build --first N`): the model's first N events.
        reference_rows = min(int(frozen["n_events"].iloc[0]), len(frame) - 1)
    else:
        # No frozen first-N reference: the model's first inferences, as the performance
        # watch's reference is (at most REFERENCE_SIZE, at most 40% of what is stored).
        reference_rows = min(REFERENCE_SIZE, int(len(frame) * 0.4))
    settings: Mapping[str, Any] = budget["settings"].iloc[0] if len(budget) else {}
    fallback = float(frozen["alpha"].iloc[0]) if len(frozen) and frozen["alpha"].iloc[0] else (
        DEFAULT_ALPHA)  # fmt: skip
    return ReportData(model, start, end, frame, findings, reference_rows, drift, performance,
                      alerts, incidents, history, spans,
                      drift_alpha=float(settings.get("drift_alpha") or fallback),
                      performance_alpha=float(settings.get("performance_alpha") or fallback),
                      database_url=database_url, notes=notes)  # fmt: skip


def _workflow(conn: psycopg.Connection, model: str, start: datetime | None,
              end: datetime | None, notes: list[str]) -> tuple[
        tuple[Alert, ...], tuple[Incident, ...], pd.DataFrame,
        dict[int, tuple[datetime, datetime]]]:  # fmt: skip
    """The period's alerts (event-time span meets it), the incidents holding them, the audit
    trail of both (who opened, acknowledged, resolved, decided, with their notes), the spans."""
    try:
        with conn.transaction():
            spans = {int(r[0]): (r[1], max(r[1], r[2])) for r in conn.execute(
                """SELECT id, coalesce(onset, first_window_end, opened_at),
                          coalesce(last_window_end, first_window_end, opened_at)
                   FROM alerts WHERE model_name = %s""",
                (model,),
            ).fetchall()}  # fmt: skip
            alerts = tuple(a for a in list_alerts(conn, model=model)
                           if span_in_period(spans[a.id], start, end))  # fmt: skip
            ids = {a.id for a in alerts}
            incidents = tuple(i for i in list_incidents(conn, all=True, model=model)
                              if ids & set(i.alerts))  # fmt: skip
    except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn) as exc:
        notes.append(f"alerts and incidents: not available ({exc.diag.message_primary}).")
        return (), (), pd.DataFrame(columns=list(HISTORY_COLUMNS)), {}
    entities = [("alert", str(a.id)) for a in alerts] + [("incident", str(i.id)) for i in incidents]
    history = _table(conn,
        """SELECT recorded_at, actor, action, entity_type, entity_id, reason FROM audit_events
           WHERE (entity_type, entity_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
             AND action <> 'alert.updated'
           ORDER BY seq""",
        ([e[0] for e in entities], [e[1] for e in entities]), HISTORY_COLUMNS, notes,
        "audit trail")  # fmt: skip
    return alerts, incidents, history, spans


def _frame(rows: list[tuple]) -> pd.DataFrame:
    records = []
    for occurred, site, dicom, scores, thresholds, image_ref, embedding, labels, study in rows:
        dicom = dicom or {}
        rec: dict[str, Any] = {
            "occurred_at": occurred,
            "study": study,
            "site": site or "unknown",
            "scanner": f"{dicom.get('Manufacturer') or 'unknown'} "
                       f"{dicom.get('ManufacturerModelName') or 'unknown'}",
            "sex": str(dicom.get("PatientSex") or "unknown"),
            "age_band": str(dicom.get("AgeBand") or "unknown"),
            "image_ref": image_ref,
            "embedding": embedding,
        }  # fmt: skip
        for tag in NUMERIC_TAGS:
            value = dicom.get(tag)
            rec[tag] = float(value) if isinstance(value, int | float) else np.nan
        for tag in CATEGORICAL_TAGS:
            rec[tag] = str(dicom.get(tag) or "unknown")
        for name, score in (scores or {}).items():
            rec[f"score_{name}"] = float(score)
            rec[f"threshold_{name}"] = float((thresholds or {}).get(name, 0.5))
            label = (labels or {}).get(name)
            rec[f"label_{name}"] = float(label) if label is not None else np.nan
        records.append(rec)
    return pd.DataFrame.from_records(records)


# -- atypical studies --------------------------------------------------------------------------


def atypicality(data: ReportData, frame: pd.DataFrame) -> pd.Series:
    """Each study's distance from the reference: the Euclidean norm of its model embedding
    standardised by the reference's per-dimension mean and spread, divided by √dimensions
    (so 1 is a typical reference study's size; NaN without an embedding)."""
    ref_vectors = [v for v in data.reference["embedding"] if v is not None]
    out = pd.Series(np.nan, index=frame.index)
    if not ref_vectors or frame.empty:
        return out
    ref = np.asarray(ref_vectors, dtype=float)
    mu, sd = ref.mean(axis=0), ref.std(axis=0) + 1e-9
    dims = ref.shape[1]
    for idx, v in frame["embedding"].items():
        if v is not None and len(v) == dims:
            out[idx] = float(np.sqrt(np.mean(((np.asarray(v, float) - mu) / sd) ** 2)))
    return out


def atypical_studies(data: ReportData, n: int = THUMBNAILS) -> pd.DataFrame:
    """The period's n studies farthest from the reference (column `atypicality`); among those
    with a stored image when any has one (the section shows their thumbnails)."""
    current = data.current
    if current["image_ref"].notna().any():
        current = current[current["image_ref"].notna()]
    distance = atypicality(data, current)
    have = distance.notna()
    if not have.any():
        return current.iloc[:0].assign(atypicality=[])
    return current[have].assign(atypicality=distance[have]).nlargest(n, "atypicality")


def thumbnails(data: ReportData, refs: list[str], key: bytes | None,
               images: Any) -> dict[str, str]:  # fmt: skip
    """image_ref → base64 PNG, read through `images` (the fenced ImageFetcher) with the sealed
    locator (issue 4) and the pseudonym key; {} when either is unavailable."""
    from collectors.errors import ImageError
    from monitor.ingest.embedding_stage import EmbeddingError, UriSealer

    refs = [r for r in refs if r]
    if not refs:
        return {}
    if images is None or key is None:
        data.notes.append("images: no image fetcher or pseudonym key given, images left out.")
        return {}
    sealer = UriSealer(key)
    with db.connect(data.database_url) as conn:
        try:
            sealed: dict[str, bytes] = dict(conn.execute(
                "SELECT image_ref, sealed_uri FROM image_locators WHERE image_ref = ANY(%s)",
                (refs,),
            ).fetchall())  # fmt: skip
        except psycopg.errors.UndefinedTable:
            data.notes.append("images: no image locators in this database.")
            return {}
    from PIL import Image

    out: dict[str, str] = {}
    for ref in refs:
        if ref not in sealed:
            continue
        try:
            image = images.load(sealer.open(ref, bytes(sealed[ref])), size=128)
        except (ImageError, EmbeddingError, OSError) as exc:
            data.notes.append(f"image {ref[:12]}…: not readable ({type(exc).__name__}).")
            continue
        pixels = (np.clip(image.pixels, 0, 1) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        out[ref] = base64.b64encode(buf.getvalue()).decode()
    return out

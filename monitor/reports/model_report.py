"""`radwatch report`: one self-contained HTML file on a model's drift and performance.

At the reading end of the data flow: reads inferences, labels, stored drift and
performance results and alerts from PostgreSQL, and renders radwatch's own sections (a
timeline figure of the unified drift score and performance with alerts marked, the most
atypical images as thumbnails, the subgroup table) followed by an Evidently report (drift
on scalar features and scores, classification metrics where labels exist). Telemetry off:
DO_NOT_TRACK is set before Evidently is imported (DESIGN.md §10).
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg

from monitor.errors import RadwatchError
from monitor.store import db

log = logging.getLogger(__name__)

REFERENCE_SIZE = 1000  # the model's first N inferences, as the performance watch's reference
TIMELINE_WINDOW = 200  # inferences per point of the fallback timeline
THUMBNAILS = 6
STRATA = ("site", "scanner", "sex", "age_band")
NUMERIC_TAGS = ("KVP", "Exposure", "XRayTubeCurrent", "Rows", "Columns", "WindowCenter",
                "WindowWidth")  # fmt: skip
CATEGORICAL_TAGS = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions",
                    "PhotometricInterpretation", "ViewPosition", "PatientSex", "AgeBand")  # fmt: skip


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
    drift: pd.DataFrame  # window_end, unified_score (stratum all), may be empty
    performance: pd.DataFrame  # window_end, metric, realised, estimated (stratum all)
    alerts: pd.DataFrame  # opened_at, signal, stratum, state
    database_url: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def current(self) -> pd.DataFrame:
        rest = self.frame.iloc[self.reference_rows :]
        if self.start is not None:
            rest = rest[rest["occurred_at"] >= self.start]
        if self.end is not None:
            rest = rest[rest["occurred_at"] < self.end]
        return rest

    @property
    def reference(self) -> pd.DataFrame:
        return self.frame.iloc[: self.reference_rows]


# -- reading -----------------------------------------------------------------------------------


def _table(conn: psycopg.Connection, sql: str, params: Sequence[Any], columns: Sequence[str],
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
                      i.embedding, l.labels
               FROM inferences i
               LEFT JOIN LATERAL (SELECT labels FROM labels lb
                                  WHERE lb.model_name = i.model_name
                                    AND lb.study_pseudo = i.study_pseudo
                                  ORDER BY lb.occurred_at DESC, lb.received_at DESC
                                  LIMIT 1) l ON true
               WHERE i.model_name = %s
               ORDER BY i.occurred_at, i.event_id""",
            (model,),
        ).fetchall()
        if not rows:
            raise ReportError(f"no inferences stored for model {model!r}")
        drift = _table(conn,
            """SELECT window_end, max(unified_score) FROM drift_results
               WHERE model_name = %s AND stratum_kind = 'all' AND unified_score IS NOT NULL
               GROUP BY window_end ORDER BY window_end""",
            (model,), ("window_end", "unified_score"), notes, "drift results")  # fmt: skip
        performance = _table(conn,
            """SELECT window_end, metric, realised, estimated FROM performance_results
               WHERE model_name = %s AND stratum_kind = 'all' AND window_kind <> 'reference'
                 AND metric IN ('auroc', 'sensitivity', 'specificity')
               ORDER BY window_end""",
            (model,), ("window_end", "metric", "realised", "estimated"), notes,
            "performance results")  # fmt: skip
        alerts = _table(conn,
            """SELECT opened_at, signal, stratum_kind || '=' || stratum_value, state
               FROM alerts WHERE model_name = %s ORDER BY opened_at""",
            (model,), ("opened_at", "signal", "stratum", "state"), notes, "alerts")  # fmt: skip
        frozen = _table(conn,
            """SELECT n_events, period_from, first_n FROM drift_references
               WHERE model_name = %s AND active""",
            (model,), ("n_events", "period_from", "first_n"), notes, "drift reference")  # fmt: skip
    frame = _frame(rows)
    findings = tuple(sorted({k for r in rows for k in (r[3] or {})}))
    if len(frozen) and frozen["period_from"].isna().all() and len(frame) > 1:
        # The frozen drift reference (`reference build --first N`): the model's first N events.
        reference_rows = min(int(frozen["n_events"].iloc[0]), len(frame) - 1)
    else:
        # No frozen first-N reference: the model's first inferences, as the performance
        # watch's reference is (at most REFERENCE_SIZE, at most 40% of what is stored).
        reference_rows = min(REFERENCE_SIZE, int(len(frame) * 0.4))
    return ReportData(model, start, end, frame, findings, reference_rows, drift, performance,
                      alerts, database_url, notes)  # fmt: skip


def _frame(rows: list[tuple]) -> pd.DataFrame:
    records = []
    for occurred, site, dicom, scores, thresholds, image_ref, embedding, labels in rows:
        dicom = dicom or {}
        rec: dict[str, Any] = {
            "occurred_at": occurred,
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


# -- radwatch's own sections -----------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def timeline_png(data: ReportData) -> str:
    """Unified drift score and performance over time, alerts as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
    if len(data.drift):
        top.plot(data.drift["window_end"], data.drift["unified_score"].astype(float),
                 marker="o", color="tab:red", label="unified drift score")  # fmt: skip
        top.set_ylabel("unified drift score")
    else:
        # No stored drift results: the score distribution itself, per window of inferences.
        f = data.findings[0] if data.findings else None
        if f:
            w = data.frame.groupby(np.arange(len(data.frame)) // TIMELINE_WINDOW)
            top.plot(w["occurred_at"].max(), w[f"score_{f}"].mean(), marker="o",
                     color="tab:red", label=f"mean {f} score per {TIMELINE_WINDOW}")  # fmt: skip
        top.set_ylabel("score (no drift results)")
    top.legend(loc="upper left", fontsize=8)
    auroc = data.performance[data.performance["metric"] == "auroc"]
    if len(auroc):
        for column, style in (("realised", "-"), ("estimated", "--")):
            series = auroc.groupby("window_end")[column].mean().dropna()
            bottom.plot(series.index, series.values, style, marker=".", label=f"AUROC {column}")
        bottom.set_ylabel("AUROC")
    else:
        f = data.findings[0] if data.findings else None
        if f:
            w = data.frame.groupby(np.arange(len(data.frame)) // TIMELINE_WINDOW)
            rate = w.apply(lambda g: float((g[f"score_{f}"] >= g[f"threshold_{f}"]).mean()))
            bottom.plot(w["occurred_at"].max(), rate.values, marker=".",
                        label="positive rate at the operating point")  # fmt: skip
        bottom.set_ylabel("positive rate (no performance results)")
    bottom.legend(loc="lower left", fontsize=8)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if len(data.reference):
            ax.axvspan(data.reference["occurred_at"].min(), data.reference["occurred_at"].max(),
                       color="tab:green", alpha=0.08)  # fmt: skip
        for opened in data.alerts["opened_at"]:
            ax.axvline(opened, color="black", linestyle=":", linewidth=1)
    top.set_title(f"{data.model}: drift and performance (green: reference; dotted: alerts)")
    fig.autofmt_xdate()
    out = _png(fig)
    plt.close(fig)
    return out


def subgroup_table(data: ReportData) -> pd.DataFrame:
    """Per stratum of the current period: counts, positive rate and, with labels,
    sensitivity, specificity and AUROC of the primary finding."""
    from sklearn.metrics import roc_auc_score

    current = data.current
    if not data.findings or current.empty:
        return pd.DataFrame()
    f = data.findings[0]
    rows = []
    for kind in STRATA:
        for value, g in current.groupby(kind):
            pred = g[f"score_{f}"] >= g[f"threshold_{f}"]
            labelled = g[f"label_{f}"].notna()
            y = g.loc[labelled, f"label_{f}"].astype(int)
            p = pred[labelled]
            row = {"stratum": kind, "value": value, "inferences": len(g),
                   "positive rate": pred.mean(), "labelled": int(labelled.sum()),
                   "sensitivity": np.nan, "specificity": np.nan, "AUROC": np.nan}  # fmt: skip
            if (y == 1).sum() >= 5:
                row["sensitivity"] = float(p[y == 1].mean())
            if (y == 0).sum() >= 5:
                row["specificity"] = float((~p[y == 0]).mean())
            if (y == 1).sum() >= 5 and (y == 0).sum() >= 5:
                row["AUROC"] = float(roc_auc_score(y, g.loc[labelled, f"score_{f}"]))
            rows.append(row)
    return pd.DataFrame(rows)


def atypical_thumbnails(data: ReportData, pseudonym_key: bytes | None,
                        images: Any = None) -> list[tuple[str, str]]:  # fmt: skip
    """(image_ref, base64 PNG) of the current period's images farthest from the reference.

    Atypicality: Euclidean distance of the model's own embedding, standardised by the
    reference's per-dimension mean and spread. Images are re-read through their sealed
    locator (issue 4) with the pseudonym key; none when either is unavailable.
    """
    current, reference = data.current, data.reference
    have = current["embedding"].notna() & current["image_ref"].notna()
    ref_vectors = [v for v in reference["embedding"] if v is not None]
    if not have.any() or not ref_vectors or pseudonym_key is None:
        return []
    ref = np.asarray(ref_vectors, dtype=float)
    mu, sd = ref.mean(axis=0), ref.std(axis=0) + 1e-9
    cur = current[have]
    dims = ref.shape[1]
    vecs = np.asarray([v if len(v) == dims else [np.nan] * dims for v in cur["embedding"]], float)
    distance = np.sqrt(np.nansum(((vecs - mu) / sd) ** 2, axis=1))
    order = np.argsort(-distance)
    refs = [cur["image_ref"].iloc[i] for i in order[: THUMBNAILS * 3]]
    return _thumbnails(data, refs, pseudonym_key, images)[:THUMBNAILS]


def _thumbnails(data: ReportData, refs: list[str], key: bytes,
                images: Any) -> list[tuple[str, str]]:  # fmt: skip
    """Thumbnails read through `images`, the fenced ImageFetcher (None: no thumbnails)."""
    from collectors.errors import ImageError
    from monitor.ingest.embedding_stage import EmbeddingError, UriSealer

    if images is None:
        data.notes.append("images: no image fetcher given, thumbnails left out.")
        return []

    sealer = UriSealer(key)
    out: list[tuple[str, str]] = []
    with db.connect(data.database_url) as conn:
        try:
            sealed: dict[str, bytes] = dict(conn.execute(
                "SELECT image_ref, sealed_uri FROM image_locators WHERE image_ref = ANY(%s)",
                (refs,),
            ).fetchall())  # fmt: skip
        except psycopg.errors.UndefinedTable:
            data.notes.append("images: no image locators in this database.")
            return []
    from PIL import Image

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
        out.append((ref, base64.b64encode(buf.getvalue()).decode()))
    return out


# -- Evidently ---------------------------------------------------------------------------------


def evidently_html(data: ReportData) -> str:
    """Evidently's report: DataDriftPreset on scalar features and scores; ClassificationPreset
    on the primary finding when both periods hold labels of both classes."""
    os.environ["DO_NOT_TRACK"] = "1"  # before the import: Evidently's telemetry off
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    reference, current = data.reference, data.current
    scores = [f"score_{f}" for f in data.findings]
    numeric = [c for c in NUMERIC_TAGS if reference[c].notna().any() and current[c].notna().any()]
    categorical = [c for c in CATEGORICAL_TAGS if c in reference]
    columns = scores + numeric + categorical
    metrics: list[Any] = [DataDriftPreset(columns=columns)]
    classification = None
    if data.findings:
        f = data.findings[0]
        both = all(set(frame[f"label_{f}"].dropna().astype(int)) == {0, 1}
                   for frame in (reference, current))  # fmt: skip
        if both:
            classification = [BinaryClassification(target="target", prediction_probas="proba")]
            metrics.append(ClassificationPreset())

    def dataset(frame: pd.DataFrame) -> Any:
        out = frame[columns].copy()
        if classification:
            f = data.findings[0]
            labelled = frame[f"label_{f}"].notna()
            out = out[labelled.values].copy()
            out["target"] = frame.loc[labelled, f"label_{f}"].astype(int).values
            out["proba"] = frame.loc[labelled, f"score_{f}"].values
        definition = DataDefinition(numerical_columns=scores + numeric,
                                    categorical_columns=categorical,
                                    classification=classification)  # fmt: skip
        return Dataset.from_pandas(out, data_definition=definition)

    with warnings.catch_warnings():
        # Evidently's statistics divide by zero on constant columns (a tag that never varies
        # in a period) and say so on stderr; the report shows those columns as not drifted.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report(metrics).run(dataset(current), dataset(reference))
    return snapshot.get_html_str(as_iframe=False)


# -- the document ------------------------------------------------------------------------------


def render(data: ReportData, *, pseudonym_key: bytes | None = None,
           include_evidently: bool = True, images: Any = None) -> str:  # fmt: skip
    esc = html.escape
    current = data.current
    if current.empty:
        raise ReportError("no inferences after the reference in the requested period")
    period = (f"{(data.start or current['occurred_at'].min()):%Y-%m-%d %H:%M} – "
              f"{(data.end or current['occurred_at'].max()):%Y-%m-%d %H:%M} UTC")  # fmt: skip
    timeline = timeline_png(data)
    thumbs = atypical_thumbnails(data, pseudonym_key, images)
    subgroups = subgroup_table(data)
    labelled = int(current[[f"label_{f}" for f in data.findings]].notna().any(axis=1).sum()) if (
        data.findings) else 0  # fmt: skip
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>radwatch report — {esc(data.model)}</title>",
        "<style>body{font-family:sans-serif;margin:24px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,td:nth-child(2)"
        "{text-align:left}.thumbs img{width:128px;height:128px;margin:4px;border:1px solid #999}"
        ".note{color:#a60}iframe{width:100%;height:1400px;border:1px solid #ccc}</style>",
        "</head><body>",
        f"<h1>radwatch report: {esc(data.model)}</h1>",
        f"<p>Period {esc(period)} · {len(current)} inferences · {labelled} with a label · "
        f"reference: the model's first {len(data.reference)} inferences · generated "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC</p>",
        "<h2>Timeline</h2>",
        f"<img id='timeline' alt='timeline' src='data:image/png;base64,{timeline}'>",
        "<h2>Alerts</h2>",
        _alerts_html(data),
        "<h2>Most atypical images</h2>",
        (
            "<div class='thumbs'>"
            + "".join(
                f"<img title='{esc(ref)}' src='data:image/png;base64,{png}'>" for ref, png in thumbs
            )
            + "</div>"
        )
        if thumbs
        else "<p id='thumbnails-none'>none</p>",  # fmt: skip
        "<h2>Subgroups</h2>",
        subgroups.to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="–", border=0)
        if len(subgroups)
        else "<p>none</p>",  # fmt: skip
    ]
    if data.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(
            f"<li class='note'>{esc(n)}</li>" for n in data.notes) + "</ul>")  # fmt: skip
    if include_evidently:
        parts += ["<h2>Evidently: data drift and classification</h2>",
                  f"<iframe title='evidently' srcdoc=\"{esc(evidently_html(data), quote=True)}\">"
                  "</iframe>"]  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def _alerts_html(data: ReportData) -> str:
    if data.alerts.empty:
        return "<p>none</p>"
    return data.alerts.to_html(index=False, border=0)

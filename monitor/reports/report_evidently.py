"""Evidently in the model report, where it adds: column-by-column drift and the classification
report, with a sentence on why its dataset verdict can differ from radwatch's.

Between the report's data (monitor/reports/model_report.py `ReportData`: reference and period
studies) and its last section. Evidently's DataDriftPreset is run on scalar tags and scores and
its per-column results (method, statistic, threshold) are shown as a table sorted drifted-first;
its ClassificationPreset report is embedded with the target named after the finding. Telemetry
off: DO_NOT_TRACK is set before Evidently is imported (DESIGN.md §10).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from monitor.reports.html_parts import Cell, esc, table
from monitor.reports.model_report import CATEGORICAL_TAGS, NUMERIC_TAGS, ReportData


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    value: float
    threshold: float

    @property
    def is_p_value(self) -> bool:
        return "p_value" in self.method

    @property
    def drifted(self) -> bool:
        # Evidently's rule: a p-value below the threshold, or a distance at or above it.
        return self.value < self.threshold if self.is_p_value else self.value >= self.threshold


@dataclass(frozen=True)
class DatasetDrift:
    columns: tuple[ColumnDrift, ...]
    drift_share: float  # the share of drifted columns at which Evidently says "drift"

    @property
    def drifted(self) -> tuple[ColumnDrift, ...]:
        return tuple(c for c in self.columns if c.drifted)

    @property
    def detected(self) -> bool:
        return bool(self.columns) and len(self.drifted) / len(self.columns) >= self.drift_share


def _evidently() -> Any:
    os.environ["DO_NOT_TRACK"] = "1"  # before the import: Evidently's telemetry off
    import evidently

    return evidently


def _columns(data: ReportData) -> tuple[list[str], list[str], list[str]]:
    reference, current = data.reference, data.current
    scores = [f"score_{f}" for f in data.findings]
    numeric = [c for c in NUMERIC_TAGS if reference[c].notna().any() and current[c].notna().any()]
    categorical = [c for c in CATEGORICAL_TAGS if c in reference]
    return scores, numeric, categorical


def column_drift(data: ReportData) -> DatasetDrift:
    """Evidently's DataDriftPreset on the period against the reference, per column."""
    ev = _evidently()
    from evidently.presets import DataDriftPreset

    scores, numeric, categorical = _columns(data)
    columns = scores + numeric + categorical
    definition = ev.DataDefinition(numerical_columns=scores + numeric,
                                   categorical_columns=categorical)  # fmt: skip

    def dataset(frame: pd.DataFrame) -> Any:
        return ev.Dataset.from_pandas(frame[columns].copy(), data_definition=definition)

    with warnings.catch_warnings():
        # Evidently's statistics divide by zero on constant columns (a tag that never varies
        # in a period) and say so on stderr; the report shows those columns as not drifted.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = ev.Report([DataDriftPreset(columns=columns)]).run(
            dataset(data.current), dataset(data.reference))  # fmt: skip
    found, share = [], 0.5
    for m in snapshot.dict()["metrics"]:
        config = m.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith("DriftedColumnsCount"):
            share = float(config.get("drift_share", share))
        elif kind.endswith("ValueDrift") and isinstance(m.get("value"), int | float):
            found.append(ColumnDrift(str(config["column"]), str(config.get("method", "")),
                                     float(m["value"]), float(config.get("threshold", 0.05))))  # fmt: skip
    found.sort(key=lambda c: (not c.drifted, c.column))
    return DatasetDrift(tuple(found), share)


def classification_html(data: ReportData) -> str | None:
    """Evidently's classification report of the primary finding on the period's labelled
    studies, the target named after the finding; None without labels of both classes."""
    if not data.findings:
        return None
    f = data.findings[0]
    frames = []
    for frame in (data.current, data.reference):
        labelled = frame[frame[f"label_{f}"].notna()]
        if set(labelled[f"label_{f}"].astype(int)) != {0, 1}:
            return None
        frames.append(pd.DataFrame({f: labelled[f"label_{f}"].astype(int).to_numpy(),
                                    f"{f} score": labelled[f"score_{f}"].to_numpy()}))  # fmt: skip
    ev = _evidently()
    from evidently.presets import ClassificationPreset

    definition = ev.DataDefinition(numerical_columns=[f"{f} score"], classification=[
        ev.BinaryClassification(target=f, prediction_probas=f"{f} score")])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = ev.Report([ClassificationPreset()]).run(
            ev.Dataset.from_pandas(frames[0], data_definition=definition),
            ev.Dataset.from_pandas(frames[1], data_definition=definition))  # fmt: skip
    return snapshot.get_html_str(as_iframe=False)


def section(data: ReportData) -> str:
    drift = column_drift(data)
    n, k = len(drift.columns), len(drift.drifted)
    verdict = "detected" if drift.detected else "NOT detected"
    why = (f"Evidently calls the dataset drifted only when at least {drift.drift_share:.0%} of "
           f"the columns drift (here {k} of {n}: dataset drift {verdict}), testing each column "
           "of the whole model at its own threshold; radwatch opens an alert when any signal of "
           "any stratum (site, scanner, sex, age band) is significant after Benjamini–Hochberg "
           f"correction at α {data.drift_alpha:g} in consecutive windows, so one new scanner at "
           "one site is enough for radwatch and not for Evidently.")  # fmt: skip
    rows: list[list[Cell | str]] = []
    classes: list[str] = []
    for c in drift.columns:
        rule = "p <" if c.is_p_value else "distance ≥"
        rows.append([c.column, c.method, Cell(f"{c.value:.3g}"), f"{rule} {c.threshold:g}",
                     Cell("drifted" if c.drifted else "no", left=True)])  # fmt: skip
        classes.append("drifted" if c.drifted else "")
    parts = [
        "<h2>Evidently: column-by-column drift</h2>",
        f"<p id='evidently-why'>{esc(why)}</p>",
        table(
            ["column", "Evidently's test", "statistic", "drift when", "drifted"],
            rows,
            row_classes=classes,
            table_id="evidently-columns",
            left=2,
        ),  # fmt: skip
    ]
    report = classification_html(data)
    if report is not None:
        f = data.findings[0]
        parts += [f"<h2>Evidently: classification report for {esc(f)}</h2>",
                  f"<p class='muted'>The period's labelled studies against the reference's; "
                  f"target: the radiologist's {esc(f)} label, prediction: the model's {esc(f)} "
                  "score.</p>",
                  f"<iframe title='evidently classification: {esc(f)}' "
                  f"srcdoc=\"{esc(report)}\"></iframe>"]  # fmt: skip
    return "\n".join(parts)

"""The model report's subgroup table: each stratum's performance with intervals, outliers marked.

Between the report's data (monitor/reports/model_report.py `ReportData`, the period's labelled
studies) and its HTML: per stratum kind, detectors/performance/subgroups.py computes AUROC,
sensitivity and specificity with 95% intervals and a one-sided test against all other studies
(Bonferroni over subgroups × metrics, as the performance watch flags gaps). A cell is an
outlier when that test flags it or when its whole interval lies below the rest's interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.performance.realised import Estimate
from detectors.performance.subgroups import SubgroupRow, subgroup_table
from monitor.reports.html_parts import Cell, esc, table
from monitor.reports.model_report import STRATA, ReportData

METRICS = (("auroc", "AUROC"), ("sensitivity", "Sensitivity"), ("specificity", "Specificity"))


@dataclass(frozen=True)
class SubgroupLine:
    """One stratum value's row: counts and each metric's estimate, rest, outlier flag."""

    kind: str
    value: str
    n_studies: int
    n_labelled: int
    n_positive: int
    cells: dict[str, SubgroupRow]

    def outlier(self, metric: str) -> bool:
        row = self.cells.get(metric)
        if row is None or not row.estimate.shown:
            return False
        below = (row.estimate.upper is not None and row.rest.lower is not None
                 and row.estimate.upper < row.rest.lower)  # fmt: skip
        return row.worse or below

    @property
    def any_outlier(self) -> bool:
        return any(self.outlier(m) for m, _ in METRICS)


def subgroup_lines(data: ReportData) -> list[SubgroupLine]:
    """The period's subgroup lines for the primary finding (empty without labels)."""
    current = data.current
    if not data.findings or current.empty:
        return []
    f = data.findings[0]
    labelled = current[current[f"label_{f}"].notna()]
    if labelled.empty:
        return []
    threshold = float(np.median(labelled[f"threshold_{f}"]))
    out = []
    for kind in STRATA:
        found = subgroup_table(labelled[f"label_{f}"].astype(int).to_numpy(),
                               labelled[f"score_{f}"].to_numpy(), labelled[kind].to_numpy(),
                               threshold, kind=kind, finding=f,
                               alpha=data.performance_alpha)  # fmt: skip
        by_value: dict[str, dict[str, SubgroupRow]] = {}
        for row in found.rows:
            by_value.setdefault(row.value, {})[row.metric] = row
        for value, cells in by_value.items():
            any_row = next(iter(cells.values()))
            out.append(SubgroupLine(kind, value, int((current[kind] == value).sum()), any_row.n,
                                    any_row.n_positive, cells))  # fmt: skip
    return out


def _interval(e: Estimate) -> str:
    if not e.shown:
        return f"– (n={e.n})"
    return f"{e.value:.2f} [{e.lower:.2f}–{e.upper:.2f}]"


def subgroup_section(data: ReportData) -> str:
    lines = subgroup_lines(data)
    if not lines:
        return "<p class='muted' id='subgroups-none'>No labelled studies in the period.</p>"
    headers = ["stratum", "value", "studies", "labelled", "positives",
               *[f"{name} [95% CI]" for _, name in METRICS], "outlier"]  # fmt: skip
    rows, classes = [], []
    for line in lines:
        marks = []
        cells: list[Cell | str] = [line.kind, line.value, str(line.n_studies),
                                   str(line.n_labelled), str(line.n_positive)]  # fmt: skip
        for metric, name in METRICS:
            row = line.cells.get(metric)
            if row is None:
                cells.append("–")
                continue
            flag = line.outlier(metric)
            if flag:
                marks.append(f"{name} below the rest ({_interval(row.rest)})")
            cells.append(Cell(("▼ " if flag else "") + _interval(row.estimate),
                              title=f"rest of the studies: {_interval(row.rest)}"))  # fmt: skip
        cells.append(Cell("; ".join(marks), left=True))
        rows.append(cells)
        classes.append("outlier" if line.any_outlier else "")
    flagged = sum(line.any_outlier for line in lines)
    lead = (f"<p class='muted'>{flagged} subgroup(s) marked ▼: worse than all other studies "
            f"(one-sided test, Bonferroni over subgroups × metrics at α "
            f"{data.performance_alpha:g}) or a 95% interval entirely below the rest's. Primary "
            f"finding: {esc(data.findings[0])}.</p>")  # fmt: skip
    return lead + table(headers, rows, row_classes=classes, table_id="subgroups", left=2)

"""Shared pieces of the Grafana dashboards: datasource, variables, query and panel helpers.

Dashboards as code (grafana-foundation-sdk): every query is built from the metric names in
monitor.metrics.names, so a renamed metric breaks the build, not a dashboard in production.
`substitute` resolves the template variables the way Grafana would for a check against a
real Prometheus (tests/monitor/metrics/test_scrape_queries.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from grafana_foundation_sdk.builders.dashboard import (
    DatasourceVariable,
    QueryVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from monitor.metrics import names

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["radwatch"]
REFRESH = "30s"

# What Grafana puts in place of a variable when "All" (or the default) is selected.
DEFAULTS: Mapping[str, str] = {
    "model": ".*",
    "signal": ".*",
    "stratum_kind": ".*",
    "metric": ".*",
    "finding": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


def datasource_variable() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def label_variable(name: str, metric: str, label: str, *, filter_: str = "") -> QueryVariable:
    """A multi-value variable listing a label's values on a metric (All = `.*`)."""
    return (
        QueryVariable(name)
        .label(label.replace("_", " "))
        .datasource(DATASOURCE)
        .query(f"label_values({metric}{filter_}, {label})")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def model_variable() -> QueryVariable:
    return label_variable("model", names.INFERENCES_STORED + "_total", "model")


def query(expr: str, legend: str = "", *, ref: str = "A", table: bool = False) -> Dataquery:
    q = Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(DATASOURCE)
    if table:
        q = q.format(PromQueryFormat.TABLE).instant()
    return q


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace `$var`, `${var}` and `[[var]]` as Grafana does (defaults: All / `.*`)."""
    table = {**DEFAULTS, **(values or {})}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in table:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return table[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", repl, expr)


def panel_queries(dashboard_json: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) for every query target of every panel."""

    def walk(panels: list[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    yield str(panel.get("title", "")), str(target["expr"])
            yield from walk(panel.get("panels") or [])

    yield from walk(list(dashboard_json.get("panels") or []))

"""Grafana dashboard "radwatch performance": realised vs estimated, with intervals, by subgroup.

AUROC, sensitivity and specificity at the operating point with their confidence
intervals, the label-free estimate beside the realised value, and a subgroup table,
from the metric names in monitor.metrics.names.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.common import (
    REFRESH,
    TAGS,
    datasource_variable,
    label_variable,
    model_variable,
    query,
)
from monitor.metrics import names as m

UID = "radwatch-performance"


def _with_interval(metric: str) -> timeseries.Panel:
    sel = (f'{{model=~"$model", finding=~"$finding", metric="{metric}", '
           'stratum_kind="all"}')  # fmt: skip
    by = "max by (model, finding, source)"
    return (
        timeseries.Panel()
        .title(
            f"{metric.upper() if metric == 'auroc' else metric.capitalize()} "
            "(realised vs estimated, 95% interval)"
        )  # fmt: skip
        .with_target(query(f"{by} ({m.PERFORMANCE}{sel})", "{{finding}} {{source}}", ref="A"))
        .with_target(
            query(f"{by} ({m.PERFORMANCE_LOWER}{sel})", "{{finding}} {{source}} lower", ref="B")
        )  # fmt: skip
        .with_target(
            query(f"{by} ({m.PERFORMANCE_UPPER}{sel})", "{{finding}} {{source}} upper", ref="C")
        )  # fmt: skip
        .min(0)
        .max(1)
        .unit("percentunit")
        .height(9)
        .span(8)
    )


def build() -> Dashboard:
    return (
        Dashboard("radwatch performance")
        .uid(UID)
        .tags(TAGS)
        .description(
            "AUROC / sensitivity / specificity with intervals, estimated vs realised, subgroups."
        )  # fmt: skip
        .refresh(REFRESH)
        .time("now-7d", "now")
        .with_variable(datasource_variable())
        .with_variable(model_variable())
        .with_variable(label_variable("finding", m.PERFORMANCE, "finding"))
        .with_row(Row("At the operating point"))
        .with_panel(_with_interval("auroc"))
        .with_panel(_with_interval("sensitivity"))
        .with_panel(_with_interval("specificity"))
        .with_row(Row("Estimated vs realised"))
        .with_panel(
            timeseries.Panel()
            .title("Estimate minus realised")
            .description(
                "Label-free (CBPE) estimate minus the realised value; near 0 when the "
                "estimate can be trusted."
            )  # fmt: skip
            .with_target(
                query(
                    f'max by (model, finding, metric) ({m.PERFORMANCE}{{model=~"$model", '
                    'finding=~"$finding", source="estimated", stratum_kind="all"}) - on (model, '
                    f"finding, metric) max by (model, finding, metric) ({m.PERFORMANCE}{{"
                    'model=~"$model", finding=~"$finding", source="realised", stratum_kind="all"})',
                    "{{finding}} {{metric}}",
                )
            )  # fmt: skip
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Degradation flagged")
            .with_target(
                query(
                    f'max by (model, finding, metric) ({m.PERFORMANCE_DEGRADED}{{model=~"$model"}})',
                    "{{finding}} {{metric}}",
                )
            )  # fmt: skip
            .min(0)
            .max(1)
            .height(8)
            .span(12)
        )
        .with_row(Row("Subgroups"))
        .with_panel(
            table.Panel()
            .title("Realised performance by subgroup")
            .with_target(
                query(
                    f'{m.PERFORMANCE}{{model=~"$model", finding=~"$finding", source="realised", '
                    'stratum_kind!="all"}',
                    table=True,
                )
            )  # fmt: skip
            .height(12)
            .span(24)
        )
    )

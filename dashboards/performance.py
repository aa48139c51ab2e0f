"""Grafana dashboard "radwatch performance": realised vs estimated, with intervals, by subgroup.

AUROC, sensitivity and specificity at the operating point with their confidence
intervals, the label-free estimate beside the realised value, and a subgroup table,
from the metric names in monitor.metrics.names. Every performance metric is unitless on
0–1 (as the reports print it), the specificity panel draws the default monitoring plan's
stop-rule floor, and degradation links to the runbook.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.common import (
    REFRESH,
    TAGS,
    dashboard_links,
    datasource_variable,
    incident_annotation,
    label_variable,
    model_variable,
    query,
    reference_annotation,
    runbook,
    threshold_line,
    thresholds,
)
from monitor.metrics import names as m

UID = "radwatch-performance"
# The default monitoring plan's stop rule "specificity below 0.80 with 95% confidence"
# (monitor/plan/document.py default_plan; a test keeps them equal). An approved plan may set
# another floor; plans are not exposed as metrics, so the panel draws the default.
SPECIFICITY_FLOOR = 0.80


def _with_interval(metric: str) -> timeseries.Panel:
    sel = (f'{{model=~"$model", finding=~"$finding", metric="{metric}", '
           'stratum_kind="all"}')  # fmt: skip
    by = "max by (model, finding, source)"
    panel = (
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
        .unit("none")
        .decimals(3)
        .height(9)
        .span(8)
    )
    if metric == "specificity":
        panel = (
            panel.description(
                f"Dashed: the default plan's stop rule, specificity below "
                f"{SPECIFICITY_FLOOR} with 95% confidence (the upper bound below "
                "it) recommends suspending use."
            )  # fmt: skip
            .thresholds(thresholds((None, "red"), (SPECIFICITY_FLOOR, "green")))
            .thresholds_style(threshold_line())
            .links(runbook("RadwatchSuspendRecommended"))
        )
    return panel


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
        .links(dashboard_links())
        .with_variable(datasource_variable())
        .with_variable(model_variable())
        .with_variable(label_variable("finding", m.PERFORMANCE, "finding"))
        .annotation(incident_annotation())
        .annotation(reference_annotation())
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
            .unit("none")
            .decimals(3)
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Degradation flagged")
            .description(
                "1 when the latest window's degradation test flagged a drop; its "
                "alert reaches Alertmanager through its incident."
            )  # fmt: skip
            .with_target(
                query(
                    f'max by (model, finding, metric) ({m.PERFORMANCE_DEGRADED}{{model=~"$model"}})',
                    "{{finding}} {{metric}}",
                )
            )  # fmt: skip
            .min(0)
            .max(1)
            .thresholds(thresholds((None, "green"), (1, "red")))
            .links(runbook("RadwatchIncident"))
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
            .unit("none")
            .decimals(3)
            .height(12)
            .span(24)
        )
    )

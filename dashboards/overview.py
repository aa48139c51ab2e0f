"""Grafana dashboard "radwatch overview": one row per model's health at a glance.

Status, unified drift score, events per second, consumer lag, the open incidents and alerts
with their acknowledgement state, from the metric names in monitor.metrics.names (built by
dashboards.build, provisioned from deploy/grafana). Every alerting panel links to its
runbook section; the alert and incident tables drill down to the drift detail (or
performance) dashboard with the model, stratum and signal of the clicked row.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    DRIFT,
    DRIFT_SCORE_AT_ALPHA,
    LAG_FLOOR,
    PERFORMANCE,
    REFRESH,
    STATE_MAP,
    TAGS,
    dashboard_links,
    datasource_variable,
    drill_down,
    field,
    incident_annotation,
    model_variable,
    open_alerts_table,
    organize,
    query,
    reference_annotation,
    runbook,
    threshold_line,
    thresholds,
    to_drift,
)
from monitor.metrics import names as m

UID = "radwatch-overview"
M = '{model=~"$model"}'


def open_incidents_table() -> table.Panel:
    return (
        table.Panel()
        .title("Open incidents")
        .description(
            "Incidents not yet resolved, one row each, and whether someone has acknowledged "
            "them (`radwatch incidents list` shows who and their note; `radwatch incidents "
            "ack|resolve ID --by WHO --note TEXT` records a decision). Click a row for the "
            "drift detail of its root-cause stratum."
        )  # fmt: skip
        .with_target(
            query(
                f"max by (model, incident, shift_type, root_cause_kind, root_cause_value, state) "
                f"({m.INCIDENT_OPEN}{M})",
                table=True,
            )
        )  # fmt: skip
        .with_transformation(
            organize(
                {
                    "incident": "Incident",
                    "model": "Model",
                    "shift_type": "Shift type",
                    "root_cause_kind": "Root cause (kind)",
                    "root_cause_value": "Root cause",
                    "state": "State",
                    "Value": "Open",
                }
            )
        )  # fmt: skip
        .mappings(STATE_MAP)
        .links(runbook("RadwatchIncident", "RadwatchIncidentAcknowledged"))
        .data_links(
            [
                to_drift(
                    table_=True, stratum=("root_cause_kind", "root_cause_value"), signal=False
                ),
            ]
        )  # fmt: skip
        .height(8)
        .span(24)
    )


def build() -> Dashboard:
    status_map: list[dm.ValueMap | dm.RangeMap | dm.RegexMap | dm.SpecialValueMap] = [
        dm.ValueMap(options={
            "0": dm.ValueMappingResult(text="ok", color="green", index=0),
            "1": dm.ValueMappingResult(text="drift", color="red", index=1),
            "2": dm.ValueMappingResult(text="insufficient data", color="yellow", index=2),
            "3": dm.ValueMappingResult(text="error", color="purple", index=3),
            "4": dm.ValueMappingResult(text="no reference", color="blue", index=4),
        })
    ]  # fmt: skip
    # The status series is one-hot over metrics.STATUSES; turn it into the status's index.
    status_expr = " or ".join(
        f'(max by (model) ({m.MODEL_STATUS}{{model=~"$model", status="{s}"}} == 1) * 0 + {i})'
        for i, s in enumerate(m.STATUSES)
    )
    model_only = drill_down("Drift detail for ${__field.labels.model}", DRIFT,
                            {"model": field("model")})  # fmt: skip
    return (
        Dashboard("radwatch overview")
        .uid(UID)
        .tags(TAGS)
        .description(
            "Per model: status, unified drift score, events/s, lag, open incidents "
            "and alerts with their acknowledgement state."
        )  # fmt: skip
        .refresh(REFRESH)
        .time("now-6h", "now")
        .links(dashboard_links())
        .with_variable(datasource_variable())
        .with_variable(model_variable())
        .annotation(incident_annotation())
        .annotation(reference_annotation())
        .with_row(Row("Models"))
        .with_panel(
            stat.Panel()
            .title("Status")
            .description("ok · drift (an open alert) · insufficient data · error · no reference")
            .with_target(query(status_expr, "{{model}}"))
            .mappings(status_map)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .links(runbook("RadwatchIncident", "RadwatchDatabaseUnreadable"))
            .data_links([model_only])
            .height(5)
            .span(6)
        )
        .with_panel(
            stat.Panel()
            .title("Open alerts")
            .description("Drift and performance alerts not yet resolved (`radwatch alerts list`).")
            .with_target(
                query(
                    f"sum by (model) ({m.ALERTS_OPEN}{M}) or (max by (model) ({m.MODEL_STATUS}{M}) * 0)",
                    "{{model}}",
                )
            )  # fmt: skip
            .thresholds(thresholds((None, "green"), (1, "red")))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .links(runbook("RadwatchIncident", "RadwatchAlertsWithoutIncident"))
            .data_links([model_only])
            .height(5)
            .span(6)
        )
        .with_panel(
            stat.Panel()
            .title("Suspend use recommended")
            .description(
                "Incidents where a stop rule of the monitoring plan holds and the governance "
                "group has not decided yet (`radwatch incidents decide`)."
            )  # fmt: skip
            .with_target(
                query(
                    f"sum by (model) ({m.SUSPEND_RECOMMENDED}{M}) or (max by (model) "
                    f"({m.MODEL_STATUS}{M}) * 0)",
                    "{{model}}",
                )
            )  # fmt: skip
            .thresholds(thresholds((None, "green"), (1, "red")))
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .links(runbook("RadwatchSuspendRecommended"))
            .height(5)
            .span(6)
        )
        .with_panel(
            stat.Panel()
            .title("Label coverage")
            .description("Share of stored inferences with a radiologist's read.")
            .with_target(query(f"{m.LABEL_COVERAGE}{M}", "{{model}}"))
            .unit("percentunit")
            .min(0)
            .max(1)
            .height(5)
            .span(6)
        )
        .with_row(Row("Open incidents and alerts"))
        .with_panel(open_incidents_table())
        .with_panel(open_alerts_table())
        .with_row(Row("Signals"))
        .with_panel(
            timeseries.Panel()
            .title("Unified drift score")
            .description(
                "The latest window's standardised signals combined, highest stratum (0 = as "
                f"the reference; the dashed line, {DRIFT_SCORE_AT_ALPHA}, is the score of a "
                "window whose every test sits at p = α = 0.05). Click a series for the drift "
                "detail."
            )  # fmt: skip
            .with_target(query(f"max by (model) ({m.DRIFT_SCORE}{M})", "{{model}}"))
            .unit("none")
            .thresholds(thresholds((None, "green"), (DRIFT_SCORE_AT_ALPHA, "red")))
            .thresholds_style(threshold_line())
            .links(runbook("RadwatchIncident"))
            .data_links([model_only])
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Inferences per second")
            .with_target(
                query(
                    f"sum by (model) (rate({m.INFERENCES_STORED}_total{M}[$__rate_interval]))",
                    "{{model}}",
                )
            )  # fmt: skip
            .unit("reqps")
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Consumer lag")
            .description(
                "Records on each topic not yet committed by the collectors; "
                "RadwatchConsumerLagGrowing fires above the dashed line while the "
                "lag still grows."
            )  # fmt: skip
            .with_target(query(f"sum by (topic) ({m.CONSUMER_LAG})", "{{topic}}"))
            .unit("short")
            .thresholds(thresholds((None, "green"), (LAG_FLOOR, "red")))
            .thresholds_style(threshold_line())
            .links(runbook("RadwatchConsumerLagGrowing"))
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Realised AUROC")
            .description(
                "Whole-model AUROC on radiologists' reads (unitless, 0–1; 0.5 is "
                "chance). Click a series for the performance dashboard."
            )  # fmt: skip
            .with_target(
                query(
                    f'max by (model, finding) ({m.PERFORMANCE}{{model=~"$model", metric="auroc", '
                    'source="realised", stratum_kind="all"})',
                    "{{model}} {{finding}}",
                )
            )  # fmt: skip
            .unit("none")
            .decimals(3)
            .min(0)
            .max(1)
            .data_links(
                [
                    drill_down(
                        "Performance of ${__field.labels.model}",
                        PERFORMANCE,
                        {"model": field("model")},
                    )
                ]
            )  # fmt: skip
            .height(8)
            .span(12)
        )
    )

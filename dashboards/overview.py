"""Grafana dashboard "radwatch overview": one row per model's health at a glance.

Status, unified drift score, events per second, consumer lag and open alerts, from the
metric names in monitor.metrics.names (built by dashboards.build, provisioned from deploy/grafana).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.common import (
    REFRESH,
    TAGS,
    datasource_variable,
    model_variable,
    query,
    thresholds,
)
from monitor.metrics import names as m

UID = "radwatch-overview"
M = '{model=~"$model"}'


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
    return (
        Dashboard("radwatch overview")
        .uid(UID)
        .tags(TAGS)
        .description("Per model: status, unified drift score, events/s, lag, open alerts.")
        .refresh(REFRESH)
        .time("now-6h", "now")
        .with_variable(datasource_variable())
        .with_variable(model_variable())
        .with_row(Row("Models"))
        .with_panel(
            stat.Panel()
            .title("Status")
            .description("ok · drift (an open alert) · insufficient data · no reference")
            .with_target(query(status_expr, "{{model}}"))
            .mappings(status_map)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .height(5)
            .span(8)
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
            .height(5)
            .span(8)
        )
        .with_panel(
            stat.Panel()
            .title("Label coverage")
            .description("Share of stored inferences with a radiologist's read.")
            .with_target(query(f"{m.LABEL_COVERAGE}{M}", "{{model}}"))
            .unit("percentunit")
            .height(5)
            .span(8)
        )
        .with_row(Row("Signals"))
        .with_panel(
            timeseries.Panel()
            .title("Unified drift score")
            .description(
                "The latest window's standardised signals combined (higher = further "
                "from the reference)."
            )  # fmt: skip
            .with_target(query(f"max by (model) ({m.DRIFT_SCORE}{M})", "{{model}}"))
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
            .description("Records on each topic not yet committed by the collectors.")
            .with_target(query(f"sum by (topic) ({m.CONSUMER_LAG})", "{{topic}}"))
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Realised AUROC")
            .with_target(
                query(
                    f'max by (model, finding) ({m.PERFORMANCE}{{model=~"$model", metric="auroc", '
                    'source="realised", stratum_kind="all"})',
                    "{{model}} {{finding}}",
                )
            )  # fmt: skip
            .min(0.5)
            .max(1)
            .height(8)
            .span(12)
        )
    )

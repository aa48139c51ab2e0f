"""Grafana dashboard "radwatch drift detail": per signal and stratum, p-values and effects.

Raw and multiplicity-adjusted p-values, effect sizes and rejections of the latest window
over time, from the metric names in monitor.metrics.names.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.builders.common import ScaleDistributionConfig
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common

from dashboards.common import (
    REFRESH,
    TAGS,
    datasource_variable,
    label_variable,
    model_variable,
    query,
)
from monitor.metrics import names as m

UID = "radwatch-drift"
SEL = '{model=~"$model", signal=~"$signal", stratum_kind=~"$stratum_kind"}'
BY = "signal, stratum_kind, stratum_value"
LEGEND = "{{signal}} {{stratum_kind}}={{stratum_value}}"
# p-values span orders of magnitude: a log axis shows 1e-6 and 0.5 on one panel.
LOG_SCALE = ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)


def build() -> Dashboard:
    return (
        Dashboard("radwatch drift detail")
        .uid(UID)
        .tags(TAGS)
        .description("Per signal and stratum: p-values (raw and BH-adjusted), effect sizes.")
        .refresh(REFRESH)
        .time("now-24h", "now")
        .with_variable(datasource_variable())
        .with_variable(model_variable())
        .with_variable(label_variable("signal", m.DRIFT_P_VALUE, "signal"))
        .with_variable(label_variable("stratum_kind", m.DRIFT_P_VALUE, "stratum_kind"))
        .with_row(Row("Unified score"))
        .with_panel(
            timeseries.Panel()
            .title("Unified drift score by stratum")
            .with_target(
                query(
                    f'max by (stratum_kind, stratum_value) ({m.DRIFT_SCORE}{{model=~"$model", '
                    'stratum_kind=~"$stratum_kind"})',
                    "{{stratum_kind}}={{stratum_value}}",
                )
            )  # fmt: skip
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Tests rejecting in the latest window")
            .with_target(query(f"sum by (signal) ({m.DRIFT_DETECTED}{SEL})", "{{signal}}"))
            .height(8)
            .span(12)
        )
        .with_row(Row("Tests"))
        .with_panel(
            timeseries.Panel()
            .title("Adjusted p-value (Benjamini–Hochberg)")
            .description("Minimum over the features of a signal; below α (0.05) means drift.")
            .with_target(query(f"min by ({BY}) ({m.DRIFT_P_VALUE_ADJUSTED}{SEL})", LEGEND))
            .scale_distribution(LOG_SCALE)
            .height(9)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Raw p-value")
            .with_target(query(f"min by ({BY}) ({m.DRIFT_P_VALUE}{SEL})", LEGEND))
            .scale_distribution(LOG_SCALE)
            .height(9)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Effect size")
            .description(
                "Largest effect size per signal and stratum (e.g. MMD², KS D, Cramér's V)."
            )
            .with_target(query(f"max by ({BY}) ({m.DRIFT_EFFECT_SIZE}{SEL})", LEGEND))
            .height(9)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Minutes since the latest window")
            .with_target(
                query(
                    f'(time() - max by (model) ({m.DRIFT_LAST_EVALUATED}{{model=~"$model"}})) / 60',
                    "{{model}}",
                )
            )  # fmt: skip
            .unit("m")
            .height(9)
            .span(12)
        )
        .with_row(Row("Latest results"))
        .with_panel(
            table.Panel()
            .title("Latest window, per test")
            .with_target(query(f"{m.DRIFT_P_VALUE_ADJUSTED}{SEL}", table=True))
            .height(10)
            .span(24)
        )
    )

"""Grafana dashboard "radwatch drift detail": per signal and stratum, p-values and effects.

Raw and multiplicity-adjusted p-values against α, effect sizes (one panel per statistic:
KS D and Cramér's V are bounded in [0, 1], the MMD² effect is a z-score, so they never
share an axis), the unified score and the open alerts of the model, stratum and signal
chosen above — the target of the overview's drill-down links — from the metric names in
monitor.metrics.names.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.builders.common import ScaleDistributionConfig
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common

from dashboards.common import (
    ALPHA,
    DRIFT_SCORE_AT_ALPHA,
    REFRESH,
    TAGS,
    dashboard_links,
    datasource_variable,
    incident_annotation,
    label_variable,
    model_variable,
    open_alerts_table,
    query,
    reference_annotation,
    runbook,
    threshold_line,
    thresholds,
)
from monitor.metrics import names as m

UID = "radwatch-drift"
STRATUM = 'stratum_kind=~"$stratum_kind", stratum_value=~"$stratum_value"'
SEL = f'{{model=~"$model", signal=~"$signal", {STRATUM}}}'
BY = "signal, stratum_kind, stratum_value"
LEGEND = "{{signal}} {{stratum_kind}}={{stratum_value}}"
# p-values span orders of magnitude: a log axis shows 1e-6 and 0.5 on one panel.
LOG_SCALE = ScaleDistributionConfig().type(common.ScaleDistribution.LOG).log(10)
# Effect sizes by detector family (detector label `family:signal`, detectors/drift/*.py):
# (family, title, description, bounded in [0, 1]).
EFFECTS = (
    ("ks", "KS D (numeric features)",
     "Largest two-sample Kolmogorov–Smirnov D over a signal's numeric features (0–1).", True),
    ("chi2", "Cramér's V / share of never-seen values (categorical features)",
     "Largest Cramér's V, or the share of values never seen in the reference, over a "
     "signal's categorical features (0–1).", True),
    ("mmd", "MMD² effect (z against the permutation null)",
     "The window's MMD² minus the mean of its permutation null, in null standard "
     "deviations (embeddings; unbounded).", False),
)  # fmt: skip


def _p_value(title: str, metric: str, description: str) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .with_target(query(f"min by ({BY}) ({metric}{SEL})", LEGEND))
        .scale_distribution(LOG_SCALE)
        .unit("none")
        .max(1)
        .thresholds(thresholds((None, "red"), (ALPHA, "green")))
        .thresholds_style(threshold_line())
        .links(runbook("RadwatchIncident"))
        .height(9)
        .span(12)
    )


def _effect(family: str, title: str, description: str, bounded: bool) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .with_target(
            query(
                f'max by ({BY}) ({m.DRIFT_EFFECT_SIZE}{{model=~"$model", signal=~"$signal", '
                f'{STRATUM}, detector=~"{family}:.*"}})',
                LEGEND,
            )
        )  # fmt: skip
        .unit("none")
        .decimals(3)
        .height(8)
        .span(8)
    )
    return panel.min(0).max(1) if bounded else panel


def build() -> Dashboard:
    dashboard = (
        Dashboard("radwatch drift detail")
        .uid(UID)
        .tags(TAGS)
        .description(
            "Per signal and stratum: p-values (raw and BH-adjusted) against α, "
            "effect sizes, open alerts."
        )  # fmt: skip
        .refresh(REFRESH)
        .time("now-24h", "now")
        .links(dashboard_links())
        .with_variable(datasource_variable())
        .with_variable(model_variable())
        .with_variable(label_variable("signal", m.DRIFT_P_VALUE, "signal"))
        .with_variable(label_variable("stratum_kind", m.DRIFT_P_VALUE, "stratum_kind"))
        .with_variable(
            label_variable(
                "stratum_value",
                m.DRIFT_P_VALUE,
                "stratum_value",
                filter_='{model=~"$model", stratum_kind=~"$stratum_kind"}',
            )
        )  # fmt: skip
        .annotation(incident_annotation())
        .annotation(reference_annotation())
        .with_row(Row("Unified score"))
        .with_panel(
            timeseries.Panel()
            .title("Unified drift score by stratum")
            .description(
                "Standardised -log10 p of the window's tests, combined (0 = as the reference). "
                f"Dashed: {DRIFT_SCORE_AT_ALPHA}, the score of a window whose every test sits "
                f"at p = α = {ALPHA}."
            )  # fmt: skip
            .with_target(
                query(
                    f'max by (stratum_kind, stratum_value) ({m.DRIFT_SCORE}{{model=~"$model", '
                    f"{STRATUM}}})",
                    "{{stratum_kind}}={{stratum_value}}",
                )
            )  # fmt: skip
            .unit("none")
            .thresholds(thresholds((None, "green"), (DRIFT_SCORE_AT_ALPHA, "red")))
            .thresholds_style(threshold_line())
            .links(runbook("RadwatchIncident"))
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Tests rejecting in the latest window")
            .with_target(query(f"sum by (signal) ({m.DRIFT_DETECTED}{SEL})", "{{signal}}"))
            .unit("none")
            .decimals(0)
            .min(0)
            .links(runbook("RadwatchIncident"))
            .height(8)
            .span(12)
        )
        .with_row(Row("Tests"))
        .with_panel(
            _p_value(
                "Adjusted p-value (Benjamini–Hochberg)",
                m.DRIFT_P_VALUE_ADJUSTED,
                f"Minimum over the features of a signal; below α ({ALPHA}, dashed) the "
                "test rejects. A monitoring plan's budget may set a smaller α per model "
                "(`radwatch plan show`).",
            )  # fmt: skip
        )
        .with_panel(
            _p_value(
                "Raw p-value",
                m.DRIFT_P_VALUE,
                f"Before the multiplicity adjustment; α ({ALPHA}) dashed for scale, the "
                "decision uses the adjusted p-value.",
            )  # fmt: skip
        )
        .with_row(Row("Effect sizes (one statistic per panel)"))
    )
    for effect in EFFECTS:
        dashboard = dashboard.with_panel(_effect(*effect))
    return (
        dashboard.with_row(Row("Alerts and freshness"))
        .with_panel(open_alerts_table(f'{{model=~"$model", signal=~"$signal", {STRATUM}}}'))
        .with_panel(
            timeseries.Panel()
            .title("Time since the latest window")
            .with_target(
                query(
                    f'time() - max by (model) ({m.DRIFT_LAST_EVALUATED}{{model=~"$model"}})',
                    "{{model}}",
                )
            )  # fmt: skip
            .unit("s")
            .min(0)
            .height(8)
            .span(24)
        )
        .with_row(Row("Latest results"))
        .with_panel(
            table.Panel()
            .title("Latest window, per test (adjusted p-value)")
            .with_target(query(f"{m.DRIFT_P_VALUE_ADJUSTED}{SEL}", table=True))
            .unit("none")
            .decimals(4)
            .height(10)
            .span(24)
        )
    )

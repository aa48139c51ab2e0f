"""Grafana dashboard "radwatch operations": ingest, dead letters, latency, lag, health.

For the platform engineer: throughput by kind, dead letters by reason, batch and end-to-end
latency percentiles, consumer lag and scrape health, from monitor.metrics.names names.
The panels behind the pipeline alerts draw the rule's own threshold (dashed) and link to
its runbook section; Prometheus's firing alerts are annotations on the timeline.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.common import (
    DEAD_LETTER_SHARE,
    LAG_FLOOR,
    REFRESH,
    STALLED_S,
    TAGS,
    dashboard_links,
    datasource_variable,
    firing_alerts_annotation,
    incident_annotation,
    query,
    runbook,
    threshold_line,
    thresholds,
)
from monitor.metrics import names as m

UID = "radwatch-operations"
RATE = "[$__rate_interval]"


def _quantiles(metric: str, by: str = "") -> list:
    group = f"le{', ' + by if by else ''}"
    legend = f"{{{{{by}}}}} " if by else ""
    return [
        query(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{RATE})))",
            f"{legend}p{int(q * 100)}",
            ref=ref,
        )  # fmt: skip
        for q, ref in ((0.5, "A"), (0.95, "B"), (0.99, "C"))
    ]


def build() -> Dashboard:
    return (
        Dashboard("radwatch operations")
        .uid(UID)
        .tags(TAGS)
        .description("Ingest throughput, dead letters, latency, consumer lag, scrape health.")
        .refresh(REFRESH)
        .time("now-3h", "now")
        .links(dashboard_links())
        .with_variable(datasource_variable())
        .annotation(firing_alerts_annotation())
        .annotation(incident_annotation())
        .with_row(Row("Ingest"))
        .with_panel(
            timeseries.Panel()
            .title("Events ingested per second")
            .description("Counted by the collector process(es) after each durable batch.")
            .with_target(
                query(f"sum by (kind) (rate({m.EVENTS_INGESTED}_total{RATE}))", "{{kind}}")
            )
            .unit("reqps")
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Stored per second (PostgreSQL)")
            .with_target(
                query(f"sum(rate({m.INFERENCES_STORED}_total{RATE}))", "inferences", ref="A")
            )  # fmt: skip
            .with_target(query(f"sum(rate({m.LABELS_STORED}_total{RATE}))", "labels", ref="B"))
            .unit("reqps")
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Dead letters per second by reason")
            .with_target(
                query(f"sum by (reason) (rate({m.DEAD_LETTERS_STORED}_total{RATE}))", "{{reason}}")
            )
            .unit("reqps")
            .links(runbook("RadwatchDeadLetterRate"))
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Share of records dead-lettered (15 min)")
            .description("What RadwatchDeadLetterRate reads; it fires above the dashed line.")
            .with_target(
                query(
                    f"sum(rate({m.DEAD_LETTERS_STORED}_total[15m])) / (sum(rate("
                    f"{m.INFERENCES_STORED}_total[15m])) + sum(rate({m.DEAD_LETTERS_STORED}"
                    "_total[15m])))",
                    "dead-lettered",
                )
            )  # fmt: skip
            .unit("percentunit")
            .min(0)
            .thresholds(thresholds((None, "green"), (DEAD_LETTER_SHARE, "red")))
            .thresholds_style(threshold_line())
            .links(runbook("RadwatchDeadLetterRate"))
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Consumer lag by topic")
            .description(
                "RadwatchConsumerLagGrowing fires above the dashed line while the lag still grows."
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
            .title("Time since the latest stored inference")
            .description("RadwatchIngestStalled fires above the dashed line (30 minutes).")
            .with_target(
                query(f"time() - max by (model) ({m.LAST_INFERENCE_RECEIVED})", "{{model}}")
            )
            .unit("s")
            .min(0)
            .thresholds(thresholds((None, "green"), (STALLED_S, "red")))
            .thresholds_style(threshold_line())
            .links(runbook("RadwatchIngestStalled"))
            .height(8)
            .span(12)
        )
        .with_row(Row("Latency"))
        .with_panel(
            timeseries.Panel()
            .title("Batch processing (parse → durable write)")
            .targets(_quantiles(m.INGEST_BATCH_SECONDS))
            .unit("s")
            .height(8)
            .span(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Inference to storage delay")
            .targets(_quantiles(m.INGEST_LAG_SECONDS))
            .unit("s")
            .height(8)
            .span(8)
        )
        .with_panel(
            timeseries.Panel()
            .title("Model inference latency (reported by the model)")
            .targets(_quantiles(m.MODEL_LATENCY_SECONDS, "model"))
            .unit("s")
            .height(8)
            .span(8)
        )
        .with_row(Row("Health"))
        .with_panel(
            timeseries.Panel()
            .title("radwatch targets up")
            .with_target(query('up{job=~"radwatch.*"}', "{{job}} {{instance}}"))
            .min(0)
            .max(1)
            .thresholds(thresholds((None, "red"), (1, "green")))
            .links(runbook("RadwatchDown"))
            .height(6)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("State readable from PostgreSQL")
            .with_target(query(f"min by (source) ({m.SOURCE_UP})", "{{source}}"))
            .min(0)
            .max(1)
            .thresholds(thresholds((None, "red"), (1, "green")))
            .links(runbook("RadwatchDatabaseUnreadable"))
            .height(6)
            .span(12)
        )
    )

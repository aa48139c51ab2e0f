"""Grafana dashboard "radwatch operations": ingest, dead letters, latency, lag, health.

For the platform engineer: throughput by kind, dead letters by reason, batch and end-to-end
latency percentiles, consumer lag and scrape health, from monitor.metrics.names names.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from dashboards.common import REFRESH, TAGS, datasource_variable, query
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
        .with_variable(datasource_variable())
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
            .height(8)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("Consumer lag by topic")
            .with_target(query(f"sum by (topic) ({m.CONSUMER_LAG})", "{{topic}}"))
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
            .height(6)
            .span(12)
        )
        .with_panel(
            timeseries.Panel()
            .title("State readable from PostgreSQL")
            .with_target(query(f"min by (source) ({m.SOURCE_UP})", "{{source}}"))
            .min(0)
            .max(1)
            .height(6)
            .span(12)
        )
    )

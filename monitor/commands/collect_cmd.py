"""`radwatch collect`: run one collector worker of the consumer group."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from collectors.events import ParseLimits
from collectors.pseudonym import Pseudonymiser
from monitor.config import Settings
from monitor.ingest.worker import BatchHook, Collector, CollectorConfig


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "collect",
        help="consume inferences and labels into PostgreSQL",
        description="One worker of the consumer group. Example: radwatch collect --until-idle 10",
    )
    parser.add_argument("--until-idle", type=float, metavar="SECONDS",
                        help="exit 0 after this many seconds without new records")  # fmt: skip
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="also serve this worker's ingest instruments (events, batch "
                        "latency, dead letters) on /metrics here")  # fmt: skip
    parser.set_defaults(handler=_collect)


def build_collector(settings: Settings, on_batch: BatchHook | None = None) -> Collector:
    from monitor.services.runtime import kafka_options, resolve_endpoints

    endpoints = resolve_endpoints(settings)
    pseudonym = Pseudonymiser(settings.key_bytes())
    config = CollectorConfig(
        kafka=kafka_options(settings, endpoints, client_id="radwatch-collect"),
        database_url=endpoints.database_url,
        inference_topic=settings.inference_topic,
        label_topic=settings.label_topic,
        deadletter_topic=settings.deadletter_topic,
        max_event_bytes=settings.max_event_bytes,
        batch_size=settings.batch_size,
        poll_timeout_ms=settings.poll_timeout_ms,
        limits=parse_limits(settings),
    )
    from monitor.ingest.embedding_stage import EmbeddingStage

    # Embeddings + image features of the decoded images, stored after each durable batch.
    post_write = [EmbeddingStage.from_settings(settings)]
    from monitor.ingest.batch_metrics import start_batch_timer

    # The batch timer first, so radwatch_ingest_batch_seconds covers every stage and the write.
    pre_write = [start_batch_timer, *_image_stages(settings, pseudonym)]
    return Collector(
        config, pseudonym, pre_write=pre_write, post_write=post_write, on_batch=on_batch
    )


def parse_limits(settings: Settings) -> ParseLimits:
    """What the parser accepts and keeps, from the settings (DESIGN.md §5, §5a)."""
    return ParseLimits(
        max_past=timedelta(days=settings.event_max_past_days),
        max_future=timedelta(hours=settings.event_max_future_hours),
        extra_fields=settings.extra_fields_allowed(),
    )


def _image_stages(settings: Settings, pseudonym: Pseudonymiser) -> list:
    """Decode `image.uri` before the write, through the fenced fetcher built from settings
    (RADWATCH_IMAGE_ROOTS, RADWATCH_DICOMWEB_URLS, DICOMweb auth); unreadable images are
    dead-lettered, images the PACS cannot serve now are parked (issues 3, 13)."""
    from monitor.ingest.image_stage import ImageStage, image_config, image_fetcher

    config = image_config(settings)
    return [ImageStage(config, pseudonym, image_fetcher(settings, config))]


def _collect(args: argparse.Namespace, settings: Settings) -> int:
    collector = build_collector(settings)
    collector.install_signal_handlers()
    server = None
    if args.metrics_addr:
        from prometheus_client import REGISTRY

        from monitor.errors import UsageError
        from monitor.metrics.server import MetricsServer, MetricsServerError
        from monitor.metrics.web_config import load_web_config

        # Protected like `radwatch metrics` when RADWATCH_METRICS_WEB_CONFIG is set.
        web_config = (
            load_web_config(settings.metrics_web_config) if settings.metrics_web_config else None
        )
        # Only this process's instruments: state in PostgreSQL is `radwatch metrics`'s job.
        try:
            server = MetricsServer(args.metrics_addr, REGISTRY, web_config=web_config).start()
        except MetricsServerError as exc:
            raise UsageError(str(exc)) from exc
    try:
        stats = collector.run(until_idle=args.until_idle)
    finally:
        if server is not None:
            server.stop()
    print(json.dumps({"inferences": stats.inferences, "labels": stats.labels,
                      "dead_letters": stats.dead_letters, "batches": stats.batches}))  # fmt: skip
    return 0

"""An ingest worker built from the settings: what `radwatch collect`, `run` and `demo` start.

Between the settings (monitor/config.py) and the ingest loop (monitor/ingest/worker.py):
the Kafka options and topics, the parser's limits, and the stages around the write (the
batch timer and image decoding before it, embeddings after it), in the order they run.
"""

from __future__ import annotations

from datetime import timedelta

from collectors.bounded_json import ParseLimits
from collectors.pseudonym import Pseudonymiser
from monitor.config import Settings
from monitor.ingest.worker import BatchHook, IngestWorker, PreWriteStage, WorkerConfig


def build_worker(settings: Settings, on_batch: BatchHook | None = None) -> IngestWorker:
    """One consumer-group worker as configured; `on_batch` sees each durable batch (benchmarks)."""
    from monitor.services.runtime import kafka_options, resolve_endpoints

    endpoints = resolve_endpoints(settings)
    pseudonym = Pseudonymiser(settings.key_bytes())
    config = WorkerConfig(
        kafka=kafka_options(settings, endpoints, client_id="radwatch-collect"),
        database_url=endpoints.database_url,
        inference_topic=settings.inference_topic,
        label_topic=settings.label_topic,
        interaction_topic=settings.interaction_topic,
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
    return IngestWorker(
        config, pseudonym, pre_write=pre_write, post_write=post_write, on_batch=on_batch
    )


def parse_limits(settings: Settings) -> ParseLimits:
    """What the parser accepts and keeps, from the settings (DESIGN.md §5, §5a)."""
    return ParseLimits(
        max_past=timedelta(days=settings.event_max_past_days),
        max_future=timedelta(hours=settings.event_max_future_hours),
        extra_fields=settings.extra_fields_allowed(),
    )


def _image_stages(settings: Settings, pseudonym: Pseudonymiser) -> list[PreWriteStage]:
    """Decode `image.uri` before the write, through the fenced fetcher built from settings
    (RADWATCH_IMAGE_ROOTS, RADWATCH_DICOMWEB_URLS, DICOMweb auth); unreadable images are
    dead-lettered, images the PACS cannot serve now are parked (issues 3, 13)."""
    from monitor.ingest.image_stage import ImageStage, image_config, image_fetcher

    config = image_config(settings)
    return [ImageStage(config, pseudonym, image_fetcher(settings, config))]

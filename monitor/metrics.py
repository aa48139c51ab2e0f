"""Prometheus metric names and the ingest instruments (one module, used by rules and dashboards).

Sits at the output edge: the collector calls `record_batch` after each durable batch.
Labels are bounded (model, topic, reason); never an identifier or anything from a patient.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from monitor.ingest_store import Batch, WriteOutcome

PREFIX = "radwatch"

EVENTS_INGESTED = f"{PREFIX}_events_ingested"  # counter: _total suffix added by the client
DEAD_LETTERS = f"{PREFIX}_dead_letters"
INGEST_BATCH_SECONDS = f"{PREFIX}_ingest_batch_seconds"
INGEST_LAG_SECONDS = f"{PREFIX}_ingest_delay_seconds"

events_ingested = Counter(
    EVENTS_INGESTED,
    "Events accepted into PostgreSQL (replays after a crash count again).",
    ["kind", "model"],
)
dead_letters = Counter(DEAD_LETTERS, "Records dead-lettered, by reason code.", ["topic", "reason"])
ingest_delay = Histogram(
    INGEST_LAG_SECONDS,
    "Seconds from an inference's occurred_at to its storage.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400),
)


def record_batch(batch: Batch, outcome: WriteOutcome) -> None:
    """Count a durable batch. A batch replayed after a crash is counted again (at least once)."""
    now = time.time()
    for event, _ in batch.inferences:
        events_ingested.labels("inference", event.model_name).inc()
        ingest_delay.observe(max(0.0, now - event.occurred_at.timestamp()))
    for label, _ in batch.labels:
        events_ingested.labels("label", label.model_name).inc()
    for letter in outcome.dead_letters:
        dead_letters.labels(letter.position.topic, str(letter.reason)).inc()

"""Ingest instruments fed: each durable batch counted and timed (the collector's last step).

The instruments and their names live in monitor.metrics.names (dashboards and rules read the
names there); this module is the ingest side that observes them, so metrics does not import
ingest.
"""

from __future__ import annotations

import time
import weakref

from monitor.ingest.batch_store import Batch, WriteOutcome
from monitor.metrics.names import (
    dead_letters,
    events_ingested,
    ingest_batch_seconds,
    ingest_delay,
    label_budget,
    model_latency,
)

# Batches are timed from the first pre-write stage to `record_batch`, keyed by id (a Batch is
# not hashable); a finaliser forgets a batch dropped on a failed write, so nothing leaks.
_batch_started: dict[int, float] = {}


def start_batch_timer(batch: Batch) -> Batch:
    """A pre-write stage (monitor.ingest.worker): note when the batch left the parser."""
    key = id(batch)
    _batch_started[key] = time.monotonic()
    weakref.finalize(batch, _batch_started.pop, key, None)
    return batch


def record_batch(batch: Batch, outcome: WriteOutcome) -> None:
    """Count a durable batch. A batch replayed after a crash is counted again (at least once)."""
    now = time.time()
    started = _batch_started.pop(id(batch), None)
    if started is not None:
        ingest_batch_seconds.observe(time.monotonic() - started)
    for event, _ in batch.inferences:
        model = label_budget("model", event.model_name)
        events_ingested.labels("inference", model).inc()
        ingest_delay.observe(max(0.0, now - event.occurred_at.timestamp()))
        if event.latency_ms is not None and event.latency_ms >= 0:
            model_latency.labels(model).observe(event.latency_ms / 1000.0)
    for label, _ in batch.labels:
        events_ingested.labels("label", label_budget("model", label.model_name)).inc()
    for letter in outcome.dead_letters:
        dead_letters.labels(label_budget("topic", letter.position.topic),
                            label_budget("reason", letter.reason)).inc()  # fmt: skip

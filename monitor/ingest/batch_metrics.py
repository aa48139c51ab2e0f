"""Ingest instruments fed: each durable batch timed and counted (the collector's last step).

Two records of a batch. In PostgreSQL, in the batch's own transaction: the counters of
migration 0012 (events, dead letters, latency histograms, kept by triggers) and the batch's
time since parsing (`start_batch_timer` marks it, monitor.store.counters.batch_written
records it); every `radwatch metrics` serves those. In this process: what this worker stored
and how long its batches took up to the offset commit (monitor.metrics.names `worker_*`),
counted once per batch, not per event, so the hot path pays nothing per record. The names live
in monitor.metrics.names; metrics does not import ingest.
"""

from __future__ import annotations

import time
import weakref

from monitor.ingest.batch_store import Batch, WriteOutcome
from monitor.metrics.names import (
    label_budget,
    worker_batch_seconds,
    worker_dead_letters,
    worker_events,
)
from monitor.store import counters

# Batches are timed from the first pre-write stage to `record_batch`, keyed by id (a Batch is
# not hashable); a finaliser forgets a batch dropped on a failed write, so nothing leaks.
_batch_started: dict[int, float] = {}


def start_batch_timer(batch: Batch) -> Batch:
    """A pre-write stage (monitor.ingest.worker): note when the batch left the parser."""
    key = id(batch)
    _batch_started[key] = time.monotonic()
    weakref.finalize(batch, _batch_started.pop, key, None)
    counters.batch_started(batch)
    return batch


def record_batch(batch: Batch, outcome: WriteOutcome) -> None:
    """This process's share of a durable batch: new rows only (a replay adds nothing)."""
    started = _batch_started.pop(id(batch), None)
    if started is not None:
        worker_batch_seconds.observe(time.monotonic() - started)
    if outcome.inferences_new:
        worker_events.labels("inference").inc(outcome.inferences_new)
    if outcome.labels_new:
        worker_events.labels("label").inc(outcome.labels_new)
    for letter in outcome.dead_letters:
        worker_dead_letters.labels(label_budget("reason", letter.reason)).inc()

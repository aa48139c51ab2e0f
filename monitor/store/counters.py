"""Ingest counters in PostgreSQL: what /metrics serves about ingest, without scanning events.

Sits in the store, between the batch write and the scrape. Migration 0012 keeps the counters
in the same transaction as the rows they count (statement triggers over the rows really
inserted, so an `ON CONFLICT DO NOTHING` replay adds nothing): events by kind, model and
site, labels, label coverage, dead letters by topic and reason, and fixed-bucket histograms
of the model's reported latency and of the ingest delay, per hour and in total. This module
is the Python side: `batch_written` (the one call the batch write makes inside its
transaction: how long the batch took since it was parsed), `read` (a handful of small
queries, summed over shards, for monitor.metrics.scrape) and `rebuild` (the migration's
backfill again, after rows were loaded with triggers off).
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

import psycopg

BATCH_SERIES = "ingest_batch"  # histogram_bounds.series of the batch timer
MODEL_LATENCY_SERIES = "model_latency"
INGEST_DELAY_SERIES = "ingest_delay"
SHARDS = 16  # counter rows per key (migration 0012): concurrent workers rarely share one


@dataclass(frozen=True)
class EventCount:
    kind: str  # inference | label
    model: str
    site: str  # '' for labels and site-less inferences
    events: int
    newest_received: float  # Unix seconds


@dataclass(frozen=True)
class DeadLetterCount:
    topic: str
    reason: str
    letters: int


@dataclass(frozen=True)
class Coverage:
    model: str
    labelled_inferences: int
    labelled_studies: int


@dataclass(frozen=True)
class Histogram:
    """A Prometheus classic histogram: finite upper bounds and cumulative counts per bound."""

    series: str
    model: str  # '' for series that are not per model
    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]  # one per bound (the +Inf bucket is `count`)
    count: int
    sum: float


@dataclass(frozen=True)
class Counters:
    events: tuple[EventCount, ...]
    dead_letters: tuple[DeadLetterCount, ...]
    coverage: tuple[Coverage, ...]
    histograms: tuple[Histogram, ...]


def read(conn: psycopg.Connection) -> Counters:
    """Every counter, summed over shards: a few hundred rows however many events are stored."""
    events = tuple(
        EventCount(kind, model, site, int(n), float(newest))
        for kind, model, site, n, newest in conn.execute(
            """SELECT kind, model_name, site, sum(events),
                      extract(epoch FROM max(newest_received_at))
               FROM ingest_counts GROUP BY kind, model_name, site
               ORDER BY sum(events) DESC, kind, model_name, site"""
        ).fetchall()
    )
    dead = tuple(
        DeadLetterCount(topic, reason, int(n))
        for topic, reason, n in conn.execute(
            """SELECT kafka_topic, reason, sum(letters) FROM dead_letter_counts
               GROUP BY kafka_topic, reason ORDER BY sum(letters) DESC, kafka_topic, reason"""
        ).fetchall()
    )
    coverage = tuple(
        Coverage(model, int(labelled), int(studies))
        for model, labelled, studies in conn.execute(
            """SELECT model_name, sum(labelled_inferences), sum(labelled_studies)
               FROM label_coverage_counts GROUP BY model_name ORDER BY model_name"""
        ).fetchall()
    )
    histograms = []
    for series, model, bounds, count, total, buckets in conn.execute(
        """SELECT t.series, t.model_name, b.bounds, sum(t.count), sum(t.sum),
                  array_agg(t.buckets)
           FROM histogram_totals t JOIN histogram_bounds b USING (series)
           GROUP BY t.series, t.model_name, b.bounds ORDER BY sum(t.count) DESC, 1, 2"""
    ).fetchall():
        per_bucket = [sum(column) for column in zip(*buckets, strict=True)]
        running, cumulative = 0, []
        for n in per_bucket[:-1]:
            running += n
            cumulative.append(running)
        histograms.append(Histogram(series, model, tuple(float(b) for b in bounds),
                                    tuple(cumulative), int(count), float(total)))  # fmt: skip
    return Counters(events, dead, coverage, tuple(histograms))


def rebuild(conn: psycopg.Connection) -> None:
    """Recount everything from the event tables (one scan each, under SHARE locks)."""
    conn.execute("SELECT radwatch_rebuild_counters()")


# -- the batch timer ---------------------------------------------------------------------------
# Keyed by id(batch) (a batch need not be hashable); a finaliser forgets a batch dropped on a
# failed write. The ingest side marks a batch when it leaves the parser (any thread).
_started: dict[int, float] = {}
_lock = threading.Lock()


def batch_started(batch: object) -> None:
    """Note when a batch left the parser (monitor.ingest.batch_metrics.start_batch_timer)."""
    key = id(batch)
    with _lock:
        _started[key] = time.monotonic()
    weakref.finalize(batch, _forget, key)


def _forget(key: int) -> None:
    with _lock:
        _started.pop(key, None)


def batch_written(conn: psycopg.Connection, batch: object) -> None:
    """Inside the batch's write transaction, after its last row: record the seconds since the
    batch was parsed in the `ingest_batch` histogram (one statement). A write of a batch that
    was never marked (dead letters stored on their own, records retried one by one) is not a
    batch of the stream and records nothing."""
    with _lock:  # kept until the batch is dropped: a write retried after a rollback counts
        started = _started.get(id(batch))
    if started is None:
        return
    seconds = time.monotonic() - started
    conn.execute(
        """SELECT radwatch_observe(ARRAY[%s], ARRAY[''], ARRAY[now()],
                                   ARRAY[(pg_backend_pid() %% %s)::smallint], ARRAY[%s::float8])""",
        (BATCH_SERIES, SHARDS, seconds),
    )

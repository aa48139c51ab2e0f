"""The ingest worker behind `radwatch collect`: one consumer-group member, Kafka → PostgreSQL.

The ingest loop of the data flow: poll a batch → parse and pseudonymise (collectors/) →
write it in one transaction (batch_store) → publish dead letters → commit offsets. The
write of one batch (a second thread) overlaps the poll and parse of the next.
Offsets are committed only after the batch is durable, and writes are idempotent on
`event_id`, so a crash anywhere replays the batch without loss or double counting.

No record can stop the worker (DESIGN.md §5a): an unexpected exception while parsing,
enriching or storing one record dead-letters that record as `internal_error` (the log
line and message hold the exception's class name only) and the batch goes on.
Infrastructure errors (PostgreSQL unavailable, broker errors) are never blamed on a
record: they are retried with backoff, or the worker stops without committing.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from types import FrameType
from typing import TypeVar

import psycopg
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from collectors.bounded_json import DEFAULT_LIMITS, ParseLimits
from collectors.errors import Reason
from collectors.event_types import INTERACTION_SCHEMA, InteractionEvent
from collectors.events import (
    INFERENCE_SCHEMA,
    LABEL_SCHEMA,
    InferenceEvent,
    Rejection,
    parse_record,
)
from collectors.kafka_io import KafkaOptions, make_consumer, make_producer, wait_for_broker
from collectors.pseudonym import Pseudonymiser
from monitor.audit import trail
from monitor.ingest import batch_metrics
from monitor.ingest.batch_store import (
    Batch,
    DeadLetter,
    IngestStore,
    Position,
    Record,
    WriteOutcome,
)
from monitor.store import db

log = logging.getLogger(__name__)
T = TypeVar("T")

# Errors of the servers, not of a record: retried or waited out, never dead-lettered.
INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, KafkaError)


@dataclass(frozen=True)
class WorkerConfig:
    kafka: KafkaOptions
    database_url: str
    inference_topic: str
    label_topic: str
    deadletter_topic: str
    max_event_bytes: int
    batch_size: int = 500
    poll_timeout_ms: int = 500
    # Decoding limits, timestamp window and extra-field allow-list (from Settings).
    limits: ParseLimits = DEFAULT_LIMITS
    interaction_topic: str = "radwatch.interactions"  # optional radwatch.interaction.v1

    def default_schema(self, topic: str) -> str:
        """The schema a record on `topic` is parsed as when it names none (DESIGN.md §4)."""
        return {self.label_topic: LABEL_SCHEMA, self.interaction_topic: INTERACTION_SCHEMA}.get(
            topic, INFERENCE_SCHEMA
        )


@dataclass
class WorkerStats:
    batches: int = 0
    inferences: int = 0
    labels: int = 0
    interactions: int = 0
    dead_letters: int = 0
    started: float = field(default_factory=time.monotonic)


BatchHook = Callable[[Batch, WriteOutcome], None]
# A stage before the write may enrich events (read DICOM tags, decode pixels) and move
# records to batch.dead_letters; a stage after the write stores derived rows (embeddings,
# image features) idempotently, before the offsets are committed.
PreWriteStage = Callable[[Batch], Batch]
PostWriteStage = Callable[[psycopg.Connection, Batch], None]


class IngestWorker:
    """The ingest loop; built from settings by monitor.ingest.wiring.build_worker."""

    def __init__(
        self,
        config: WorkerConfig,
        pseudonym: Pseudonymiser,
        *,
        on_batch: BatchHook | None = None,
        pre_write: Sequence[PreWriteStage] = (),
        post_write: Sequence[PostWriteStage] = (),
    ) -> None:
        self.config = config
        self.pseudonym = pseudonym
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._on_batch = on_batch
        self._pre_write = tuple(pre_write)
        self._post_write = tuple(post_write)
        self._conn: psycopg.Connection | None = None
        self._store: IngestStore | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("received %s: finishing the current batch", signal.Signals(signum).name)
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self, until_idle: float | None = None) -> WorkerStats:
        """Consume until stopped (or idle for `until_idle` seconds); returns what was done."""
        cfg = self.config
        # Audit trail: radwatch.start with version and configuration hash (issue 8).
        lifecycle = trail.Lifecycle(cfg.database_url, component="collector", config=cfg)
        lifecycle.start(should_stop=self._stop.is_set)
        wait_for_broker(cfg.kafka, should_stop=self._stop.is_set)
        topics = [cfg.inference_topic, cfg.label_topic, cfg.interaction_topic]
        consumer = make_consumer(cfg.kafka, topics, max_poll_records=cfg.batch_size)
        producer = make_producer(cfg.kafka)
        last_record = time.monotonic()
        log.info("collecting %s as group %s", ", ".join(topics), cfg.kafka.group_id)
        # Parsing overlaps the write: while one thread stores batch N (PostgreSQL and the
        # broker work, this process mostly waits), this one polls and parses batch N+1.
        # Offsets are committed for batch N alone (explicit offsets, never the consumer's
        # position) and only once it is durable, so at-least-once holds as before.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="radwatch-write")
        in_flight: tuple[Batch, dict, Future[WriteOutcome]] | None = None
        try:
            while True:
                records: list = []
                if not self._stop.is_set():
                    polled = consumer.poll(timeout_ms=cfg.poll_timeout_ms,
                                           max_records=cfg.batch_size)  # fmt: skip
                    records = [r for batch in polled.values() for r in batch]
                batch = offsets = None
                if records:
                    last_record = time.monotonic()
                    batch, offsets = self._parse(records), _next_offsets(records)
                if in_flight is not None:
                    done_batch, done_offsets, future = in_flight
                    in_flight = None
                    try:
                        outcome = future.result()
                    except INFRASTRUCTURE_ERRORS as exc:
                        if isinstance(exc, psycopg.OperationalError) and db.describe(exc).permanent:
                            # Configuration, not an outage (a revoked login, a dropped
                            # database): waiting never fixes it. Nothing is committed; the
                            # CLI says why on one line and exits 2, so a supervisor sees a
                            # failed worker.
                            raise
                        log.warning("stopping with a batch not committed (%s); it will be "
                                    "replayed", type(exc).__name__)  # fmt: skip
                        break
                    self._commit(consumer, done_offsets)
                    self._account(done_batch, outcome)
                if batch is not None and offsets is not None:
                    in_flight = (batch, offsets, writer.submit(self._store_batch, producer, batch))
                    continue
                if self._stop.is_set():
                    break
                # Idle time counts only once the group has given us partitions: a join
                # can take a few seconds and is not idleness.
                if not consumer.assignment() and time.monotonic() - last_record < 60:
                    last_record = time.monotonic()
                elif until_idle is not None and time.monotonic() - last_record >= until_idle:
                    break
        finally:
            if in_flight is not None:
                # Leaving on an error: let the write in flight end (its batch is not
                # committed, so it is replayed), never close the clients under it.
                wait([in_flight[2]])
            writer.shutdown(wait=True)
            producer.flush(timeout=10)
            producer.close(timeout=10)
            consumer.close(autocommit=False)
            if self._conn is not None:
                self._conn.close()
            lifecycle.stop(detail={"inferences": self.stats.inferences,
                                   "labels": self.stats.labels,
                                   "interactions": self.stats.interactions,
                                   "dead_letters": self.stats.dead_letters},
                           error=sys.exc_info()[1])  # fmt: skip
        return self.stats

    # -- steps -------------------------------------------------------------------------------

    def _parse(self, records: list) -> Batch:
        cfg = self.config
        batch = Batch()
        defaults: dict[str, str] = {}  # per topic, looked up once per batch
        for rec in records:
            record = Record(
                Position(rec.topic, rec.partition, rec.offset), rec.value or b"", rec.key
            )
            default = defaults.get(rec.topic)
            if default is None:
                default = defaults[rec.topic] = cfg.default_schema(rec.topic)
            try:
                parsed = parse_record(rec.value, default_schema=default,
                                      pseudonym=self.pseudonym, max_bytes=cfg.max_event_bytes,
                                      limits=cfg.limits)  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - one record never stops the worker
                batch.dead_letters.append(_internal_error(record, exc, "parsing"))
                continue
            if isinstance(parsed, Rejection):
                batch.dead_letters.append(DeadLetter(record, parsed.reason, parsed.message))
            elif isinstance(parsed, InferenceEvent):
                batch.inferences.append((parsed, record))
            elif isinstance(parsed, InteractionEvent):
                batch.interactions.append((parsed, record))
            else:
                batch.labels.append((parsed, record))
        return batch

    def _store_batch(self, producer, batch: Batch) -> WriteOutcome:
        """The writer thread's part: pre-write stages, the write, the dead letters published."""
        for stage in self._pre_write:
            batch = self._with_backoff(
                functools.partial(self._run_stage, stage, batch), "a pre-write stage"
            )
        outcome = db.with_retry(
            functools.partial(self._write, batch), what="writing a batch",
            should_stop=self._stop.is_set,
        )  # fmt: skip
        self._with_backoff(
            functools.partial(self._publish_dead_letters, producer, outcome.dead_letters),
            "publishing dead letters",
        )
        return outcome

    def _with_backoff(self, action: Callable[[], T], what: str) -> T:
        """Run `action`, retrying infrastructure errors with backoff until it works or we stop."""
        delay = 0.2
        while True:
            try:
                return action()
            except INFRASTRUCTURE_ERRORS as exc:
                if self._stop.is_set():
                    raise
                log.warning("%s failed (%s); retrying in %.1fs", what, type(exc).__name__, delay)
                time.sleep(delay)
                delay = min(10.0, delay * 2)

    def _run_stage(self, stage: PreWriteStage, batch: Batch) -> Batch:
        """One pre-write stage, guarded: what fails for one record dead-letters that record."""
        before = (list(batch.inferences), list(batch.labels), list(batch.dead_letters),
                  dict(batch.images))  # fmt: skip
        try:
            return stage(batch)
        except INFRASTRUCTURE_ERRORS:
            _restore(batch, before)  # retried as a whole, from where it started
            raise
        except Exception as exc:  # noqa: BLE001 - find the record, keep the others
            _restore(batch, before)
            log.error("a pre-write stage failed on a batch (%s); running it record by record",
                      type(exc).__name__)  # fmt: skip
        done = Batch(dead_letters=list(batch.dead_letters), images=dict(batch.images))
        # Interactions stay in `batch` as they are: no pre-write stage reads them.
        singles = [Batch(inferences=[item]) for item in batch.inferences]
        singles += [Batch(labels=[item]) for item in batch.labels]
        for single in singles:
            _, record = (single.inferences or single.labels)[0]
            try:
                out = stage(single)
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as exc:  # noqa: BLE001 - this record, and only this one
                done.dead_letters.append(_internal_error(record, exc, "a pre-write stage"))
                continue
            done.inferences += out.inferences
            done.labels += out.labels
            done.dead_letters += out.dead_letters
            done.images.update(out.images)
        # The same Batch object goes on: stages such as the batch timer key on its identity.
        _restore(batch, (done.inferences, done.labels, done.dead_letters, done.images))
        return batch

    def _write(self, batch: Batch) -> WriteOutcome:
        """Store a batch; if PostgreSQL rejects its content, isolate the offending records."""
        try:
            return self._write_once(batch)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.error("PostgreSQL rejected a batch (%s: %s); isolating the records it refuses",
                      exc.sqlstate, type(exc).__name__)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - some record broke the write: find it
            log.error("storing a batch failed (%s); isolating the records that fail",
                      type(exc).__name__)  # fmt: skip
        return self._write_isolating(batch)

    def _write_once(self, batch: Batch) -> WriteOutcome:
        if self._store is None or self._conn is None or self._conn.closed:
            self._conn = db.connect(self.config.database_url, autocommit=True)
            self._store = IngestStore(self._conn, self.pseudonym)
        try:
            # One transaction for the events and what post-write stages derive from them:
            # a stage failing on a record rolls its event back too, so the record is either
            # stored whole or dead-lettered, never both.
            with self._conn.transaction():
                outcome = self._store.write(batch)
                for stage in self._post_write:
                    stage(self._conn, batch)
            return outcome
        except psycopg.OperationalError:
            # The connection is gone; the next attempt reconnects.
            self._conn.close()
            self._store = None
            raise

    def _write_isolating(self, batch: Batch) -> WriteOutcome:
        """One record per transaction: the refused ones are dead-lettered, the rest stored."""
        n_inf = n_lab = n_int = 0
        dead = list(batch.dead_letters)
        singles = [Batch(inferences=[item], images=batch.images) for item in batch.inferences]
        singles += [Batch(labels=[item]) for item in batch.labels]
        singles += [Batch(interactions=[item]) for item in batch.interactions]
        for single in singles:
            _, record = single.events()[0]
            try:
                outcome = self._write_once(single)
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                dead.append(DeadLetter(record, Reason.STORAGE_REJECTED,
                                       f"PostgreSQL refused the record ({exc.sqlstate})"))  # fmt: skip
                continue
            except Exception as exc:  # noqa: BLE001 - this record, and only this one
                dead.append(_internal_error(record, exc, "storing"))
                continue
            n_inf += outcome.inferences_new
            n_lab += outcome.labels_new
            n_int += outcome.interactions_new
            dead += outcome.dead_letters
        return WriteOutcome(n_inf, n_lab, self._write_dead_letters(dead), n_int)

    def _write_dead_letters(self, dead: list[DeadLetter]) -> tuple[DeadLetter, ...]:
        """Store dead letters; one PostgreSQL refuses is stored again without its payload.

        Payloads and messages are already made safe (DeadLetter.redacted_payload and
        safe_message), so this is the last line: the record's position and reason always
        reach the table, and the offsets can move on.
        """
        try:
            return self._write_once(Batch(dead_letters=dead)).dead_letters
        except psycopg.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - the dead-letter write must not fail
            log.error("storing dead letters failed (%s); storing them one by one",
                      type(exc).__name__)  # fmt: skip
        stored: list[DeadLetter] = []
        for letter in dead:
            try:
                stored += self._write_once(Batch(dead_letters=[letter])).dead_letters
            except psycopg.OperationalError:
                raise
            except Exception:  # noqa: BLE001 - keep where and why, drop what would not store
                bare = Record(letter.position, b"", letter.record.key)
                stored.append(DeadLetter(bare, letter.reason, str(letter.reason)))
                self._write_once(Batch(dead_letters=[stored[-1]]))
        return tuple(stored)

    def _publish_dead_letters(self, producer, dead: tuple[DeadLetter, ...]) -> None:
        for letter in dead:
            # Where and why only: messages may quote the producer's field names.
            log.warning("dead-lettered %s[%d]@%d: %s", letter.position.topic,
                        letter.position.partition, letter.position.offset,
                        letter.reason)  # fmt: skip
            producer.send(self.config.deadletter_topic, value=letter.topic_value(),
                          key=letter.record.key)  # fmt: skip
        if dead:
            # At-least-once on the dead-letter topic: flushed before the offsets move on.
            producer.flush(timeout=30)

    def _commit(self, consumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        try:
            consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # A rebalance took the partitions: the new owner replays, and writes are idempotent.
            log.warning("offset commit failed (%s); records will be replayed idempotently",
                        type(exc).__name__)  # fmt: skip

    def _account(self, batch: Batch, outcome: WriteOutcome) -> None:
        self.stats.batches += 1
        self.stats.inferences += outcome.inferences_new
        self.stats.labels += outcome.labels_new
        self.stats.interactions += outcome.interactions_new
        self.stats.dead_letters += len(outcome.dead_letters)
        batch_metrics.record_batch(batch, outcome)
        if self._on_batch is not None:
            self._on_batch(batch, outcome)


def _next_offsets(records: list) -> dict[TopicPartition, OffsetAndMetadata]:
    """The offsets to commit once these records are durable: past the last one, per partition."""
    last: dict[TopicPartition, int] = {}
    for rec in records:
        tp = TopicPartition(rec.topic, rec.partition)
        last[tp] = max(last.get(tp, -1), rec.offset)
    return {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items()}


def _internal_error(record: Record, exc: BaseException, where: str) -> DeadLetter:
    """Dead letter for an unexpected exception: the class name only, never its message."""
    name = type(exc).__name__
    log.error("record %s[%d]@%d: internal_error while %s (%s)", record.position.topic,
              record.position.partition, record.position.offset, where, name)  # fmt: skip
    return DeadLetter(record, Reason.INTERNAL_ERROR, f"unexpected {name} while {where}")


def _restore(batch: Batch, parts: tuple[list, list, list, dict]) -> None:
    batch.inferences, batch.labels, batch.dead_letters, batch.images = (
        list(parts[0]), list(parts[1]), list(parts[2]), dict(parts[3]),
    )  # fmt: skip

"""Kafka clients for the input edge: consumer-group members, producers, topics and lag.

Thin wrappers over kafka-python that apply radwatch's defaults (manual offset commits,
short group timeouts, security options) in one place, so the collector, the simulator,
the status command and the tests all talk to Kafka the same way.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from collectors.errors import CollectorError

log = logging.getLogger(__name__)


class BrokerUnavailable(CollectorError, KafkaError):
    """No Kafka broker answered at the bootstrap address; the message is one line.

    `permanent`: the address itself is wrong (its host does not resolve), so waiting for
    the broker can never succeed.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent

    def __str__(self) -> str:  # KafkaError's own prefixes the class name
        return str(self.args[0])


@dataclass(frozen=True)
class KafkaOptions:
    bootstrap: str
    group_id: str = "radwatch-collectors"
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    security: Mapping[str, Any] | None = None
    client_id: str = "radwatch"
    # How long a new client waits for its first broker: kafka-python's 30 s default is a
    # service's patience; one-shot commands pass less so they fail within seconds.
    bootstrap_timeout_ms: int = 30_000

    def common(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap.split(","), "client_id": self.client_id,
                "bootstrap_timeout_ms": self.bootstrap_timeout_ms,
                **(self.security or {})}  # fmt: skip


def make_consumer(options: KafkaOptions, topics: Iterable[str], *, max_poll_records: int,
                  **overrides: Any) -> KafkaConsumer:  # fmt: skip
    """A consumer-group member that never commits by itself: offsets follow durable writes."""
    consumer = KafkaConsumer(
        group_id=options.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        session_timeout_ms=options.session_timeout_ms,
        heartbeat_interval_ms=options.heartbeat_interval_ms,
        # A batch stalled by a database outage must not cost us our partitions too early.
        max_poll_interval_ms=300_000,
        **options.common(),
        **overrides,
    )
    consumer.subscribe(list(topics))
    return consumer


def make_producer(options: KafkaOptions, **overrides: Any) -> KafkaProducer:
    # acks=all and idempotence off: tansu's memory build does not implement InitProducerId.
    return KafkaProducer(
        **{"acks": "all", "linger_ms": 5, "retries": 5, **options.common(), **overrides}
    )


def wait_for_broker(options: KafkaOptions, *, timeout: float | None = None,
                    should_stop: Any = lambda: False) -> None:  # fmt: skip
    """Block until the broker answers, logging clearly and backing off meanwhile.

    `timeout=0` tries once (one-shot commands). Raises BrokerUnavailable when giving up, and
    at once when a bootstrap host does not resolve (a wrong address never starts working).
    """
    delay, deadline = 0.5, None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            # A plain TCP connect first: kafka-python's own bootstrap retries a refused
            # connection for ~30 s with ERROR lines before it raises, hiding this message.
            _tcp_reachable(options.bootstrap)
            probe = {**options.common(), "request_timeout_ms": 5000,
                     "bootstrap_timeout_ms": min(5000, options.bootstrap_timeout_ms)}  # fmt: skip
            with _quiet_kafka():
                KafkaAdminClient(**probe).close()
            return
        except socket.gaierror as exc:
            raise BrokerUnavailable(
                f"Kafka at {options.bootstrap}: the host name does not resolve "
                "(check RADWATCH_KAFKA_BOOTSTRAP)",
                permanent=True,
            ) from exc
        except (KafkaError, OSError) as exc:
            reason = _reason(exc)
            if should_stop() or (deadline is not None and time.monotonic() >= deadline):
                raise BrokerUnavailable(
                    f"Kafka at {options.bootstrap}: {reason} (is the broker running? "
                    "check RADWATCH_KAFKA_BOOTSTRAP)"
                ) from exc
            log.warning("Kafka at %s unavailable (%s); retrying in %.1fs", options.bootstrap,
                        reason, delay)  # fmt: skip
            time.sleep(delay)
            delay = min(10.0, delay * 2)


@contextlib.contextmanager
def _quiet_kafka() -> Iterator[None]:
    """kafka-python logs each failed bootstrap try as ERROR lines (dozens in 5 s against a
    port that is not Kafka); the probe's own line says it once, so they are held back."""
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        kafka_log.setLevel(level)


def _reason(exc: BaseException) -> str:
    """A short, fixed description of why a broker did not answer (no record content)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "no answer (timed out)"
    if isinstance(exc, KafkaError):
        return f"no Kafka answer ({type(exc).__name__})"
    return type(exc).__name__


def _tcp_reachable(bootstrap: str, timeout: float = 3.0) -> None:
    """Return when one bootstrap server accepts a TCP connection; raise the last OSError.

    A host that does not resolve raises socket.gaierror only when no server answered.
    """
    error: OSError | None = None
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        if not port.isdigit():
            return  # not host:port; let kafka-python judge it
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                return
        except socket.gaierror as exc:
            error = error or exc
        except OSError as exc:
            error = exc
    if error is not None:
        raise error


def ensure_topics(options: KafkaOptions, topics: Iterable[str], partitions: int) -> None:
    """Create topics that do not exist yet (idempotent)."""
    admin = KafkaAdminClient(**options.common())
    try:
        existing = set(admin.list_topics())
        missing = [NewTopic(t, num_partitions=partitions, replication_factor=1)
                   for t in topics if t not in existing]  # fmt: skip
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()


def consumer_lag(
    options: KafkaOptions, topics: Iterable[str]
) -> dict[str, dict[int, dict[str, int | None]]]:
    """Per topic and partition: the end offset, the group's committed offset and the lag.

    A consumer with the group's id that never subscribes reads the committed offsets
    without joining the group, so asking does not trigger a rebalance.
    """
    probe = KafkaConsumer(group_id=options.group_id, enable_auto_commit=False, **options.common())
    out: dict[str, dict[int, dict[str, int | None]]] = {}
    try:
        partitions = [TopicPartition(t, p) for t in topics
                      for p in sorted(probe.partitions_for_topic(t) or [])]  # fmt: skip
        ends = probe.end_offsets(partitions) if partitions else {}
        for tp in partitions:
            done = probe.committed(tp)
            end = ends.get(tp, 0)
            # Clamped at 0: tansu's ListOffsets can report an end a batch behind the last
            # committed position; real Kafka never does.
            out.setdefault(tp.topic, {})[tp.partition] = {
                "end": end,
                "committed": done,
                "lag": max(0, end - (done or 0)),
            }
    finally:
        probe.close(autocommit=False)
    return out

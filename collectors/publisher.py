"""Publishing contract-v1 events to Kafka, for an inference service or a radwatch listener.

Before the data flow's first step: the producer side of the wire contract (DESIGN.md §4,
docs/contract/README.md). An event is serialised the one way the contract names (compact
UTF-8 JSON), keyed by its study so one study stays on one partition, checked against the
same parser the collector runs, and `publish` returns only once the broker has acknowledged
it on all in-sync replicas. Delivery is at-least-once: when `publish` raises, publish the
same document again; the collector stores an event_id once, and the same bytes are a replay,
never a conflict.

    from collectors.publisher import EventPublisher

    with EventPublisher("kafka:9092", "radwatch.inferences") as events:
        events.publish({"schema": "radwatch.inference.v1", "event_id": str(uuid4()), ...})
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from kafka.errors import KafkaError

from collectors.errors import CollectorError, Reason
from collectors.event_types import INFERENCE_SCHEMA, LABEL_SCHEMA
from collectors.events import Rejection, parse_reference
from collectors.kafka_io import KafkaOptions, make_producer
from collectors.pseudonym import Pseudonymiser

# The collector's default record limit (monitor.config max_event_bytes is configurable there;
# a larger event would be dead-lettered as too_large by a collector left at its default).
DEFAULT_MAX_BYTES = 1 << 20


class PublishError(CollectorError):
    """An event was not published: refused by the contract (`reason` set) or not acknowledged.

    The message never repeats the event's values (they carry identifiers, DESIGN.md §5).
    """

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.reason = reason


def serialise(doc: Mapping[str, Any]) -> bytes:
    """The contract's bytes for an event: compact JSON, UTF-8, no NaN or Infinity.

    Deterministic for a given dict (insertion order kept), so re-publishing the same document
    after a failed `publish` yields the same content hash: a replay, not a conflict.
    """
    try:
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PublishError(f"event is not JSON: {type(exc).__name__}", Reason.NOT_JSON) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not valid UTF-8
        raise PublishError("event is not valid Unicode", Reason.BAD_UNICODE) from None


def record_key(doc: Mapping[str, Any]) -> bytes | None:
    """The record key (DESIGN.md §4): the study UID, else the accession of a label by accession.

    The value carries the same identifier, so the key discloses nothing more; it keeps every
    event of one study on one partition, in order.
    """
    study = doc.get("study")
    if not isinstance(study, Mapping):
        return None
    for field in ("study_uid", "accession"):
        value = study.get(field)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value).encode("utf-8")
    return None


class EventPublisher:
    """A Kafka producer for contract-v1 events: acks=all, retries, one record in flight.

    `default_schema`: the schema assumed for a document without `schema` (the collector
    assumes the topic's). `validate`: parse each event with the collector's own parser first
    and raise PublishError with its reason code, instead of leaving a dead letter to find.
    `security`: kafka-python's SSL/SASL options, as monitor.config builds them.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        default_schema: str = INFERENCE_SCHEMA,
        validate: bool = True,
        timeout_s: float = 30.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        security: Mapping[str, Any] | None = None,
        client_id: str = "radwatch-publisher",
    ) -> None:
        if default_schema not in (INFERENCE_SCHEMA, LABEL_SCHEMA):
            raise ValueError(f"default_schema must be {INFERENCE_SCHEMA} or {LABEL_SCHEMA}")
        self.topic = topic
        self.default_schema = default_schema
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        # Validation needs pseudonyms only to build the event it then discards: a random
        # key, never the site's, so nothing here can link to the stored pseudonyms.
        self._check = Pseudonymiser(os.urandom(32)) if validate else None
        options = KafkaOptions(bootstrap=bootstrap, security=security, client_id=client_id)
        try:
            # acks=all: the record is on every in-sync replica before the ack. One request in
            # flight keeps a retried record in order. Idempotence stays off (the embedded
            # broker does not implement InitProducerId); duplicates are the collector's to drop.
            self._producer = make_producer(
                options, retries=10, max_in_flight_requests_per_connection=1,
                request_timeout_ms=int(timeout_s * 1000),
            )  # fmt: skip
        except KafkaError as exc:
            raise PublishError(f"no Kafka broker at the bootstrap address ({exc})") from None

    def publish(self, doc: Mapping[str, Any]) -> None:
        """Send one event; return once the broker acknowledged it, else raise PublishError."""
        raw = serialise(doc)
        if len(raw) > self.max_bytes:
            raise PublishError(
                f"event is {len(raw)} bytes, limit is {self.max_bytes}", Reason.TOO_LARGE
            )
        if self._check is not None:
            result = parse_reference(raw, default_schema=self.default_schema,
                                     pseudonym=self._check, max_bytes=self.max_bytes)  # fmt: skip
            if isinstance(result, Rejection):
                raise PublishError(f"{result.reason}: {result.message}", result.reason)
        try:
            self._producer.send(self.topic, key=record_key(doc), value=raw).get(
                timeout=self.timeout_s
            )
        except KafkaError as exc:
            # Not acknowledged: it may or may not be stored. Publishing again is safe.
            raise PublishError(f"not acknowledged by the broker: {type(exc).__name__}") from exc

    def close(self) -> None:
        self._producer.close(timeout=self.timeout_s)

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

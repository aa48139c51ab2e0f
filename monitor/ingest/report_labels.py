"""A parsed radiology report → label events by accession on Kafka (or a dead letter).

Shared by the two report paths in (monitor/ingest/report_listener.py for HL7 v2 over MLLP,
monitor/ingest/fhir_import.py for FHIR R4 NDJSON), between collectors.reports_in's parsers
and the collector that stores labels. For each model the site configured, the labeler
(collectors.labeler, interface 1) turns the report text into 0/1 labels and evidence spans;
a `radwatch.label.v1` event naming the study by accession (interface 2) is published, and
this returns only once the broker acknowledged it (acks=all).

Result status: final (F) and corrected (C) reports are labelled the same way; a correction is
a later label event for the same accession, and the store keeps the label history. A
preliminary (P) report is ignored (counted, no event): the signed report follows it.

Privacy (DESIGN.md §5): the report text goes to the labeler and nowhere else; the event
carries numbers, spans and their hashes. The accession travels raw inside the event, as in
an inference service's event, and the collector pseudonymises it before storing. A dead
letter carries only the reason, the message's SHA-256 and size, and the accession's pseudonym:
never the original bytes (they hold PID segments and report text). Logs name the same.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from collectors.pseudonym import Pseudonymiser
from collectors.reports_in import ReportError, ReportMessage, ResultStatus
from monitor.errors import ConfigError
from monitor.metrics.names import count_listener

log = logging.getLogger(__name__)

LABEL_SCHEMA = "radwatch.label.v1"
DEADLETTER_SCHEMA = "radwatch.deadletter.v1"
SOURCE = "report-labeler"
# Event ids are derived, not random: a message the sender resends (its ACK was lost) gives
# the same events, which the store keeps once (idempotency by event_id, DESIGN.md §4).
_EVENT_NAMESPACE = uuid.UUID("6c3f0a52-5b0e-4d8e-9a7c-2f1e3b4d5a60")


class Labeler(Protocol):
    """Interface 1 (collectors.labeler.ReportLabeler), as this module uses it."""

    name: str
    version: str
    fingerprint: str

    def label(self, text: str, findings: Any = None) -> Any: ...


class Publisher(Protocol):
    def publish(self, doc: dict[str, Any], key: bytes | None = None) -> None: ...


@dataclass(frozen=True)
class ModelFindings:
    """A model the report's labels are for, and the findings it scores (None: the lexicon's)."""

    name: str
    findings: tuple[str, ...] | None = None


def parse_report_models(text: str) -> tuple[ModelFindings, ...]:
    """ "cxr-nodule=nodule,mass; cxr-ptx" → models; ConfigError (one line) when malformed."""
    models = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        name, _, findings = part.partition("=")
        name = name.strip()
        if not name or len(name) > 128 or any(c in name for c in ",= "):
            raise ConfigError(f"report model {name!r}: write MODEL or MODEL=finding,finding")
        listed = tuple(f.strip() for f in findings.split(",") if f.strip())
        models.append(ModelFindings(name, listed or None))
    if not models:
        raise ConfigError("no report model given: --model MODEL[=finding,...] or report_models")
    if len({m.name for m in models}) != len(models):
        raise ConfigError("a report model is named twice")
    return tuple(models)


@dataclass(frozen=True)
class Outcome:
    """What became of one report: `published` events, or why none."""

    published: int
    ignored: str | None = None  # "preliminary" or "no_findings"


def _label_values(result: Any, findings: tuple[str, ...] | None,
                  not_mentioned_negative: bool) -> dict[str, int]:  # fmt: skip
    """The event's 0/1 labels (collectors.labeler.to_label_values): uncertain dropped; a
    finding not mentioned is 0 when configured, for the model's listed findings only (a
    model listed without findings gets labels for what the report mentions)."""
    from collectors.labeler import to_label_values

    wanted = findings if findings is not None else tuple(result.labels)
    values = to_label_values(result, wanted, not_mentioned_negative=not_mentioned_negative)
    return {f: int(v) for f, v in values.items() if v in (0, 1)}


class ReportLabelSink:
    """Labels reports and publishes their events; dead-letters what cannot be used."""

    def __init__(
        self,
        labeler: Labeler,
        models: tuple[ModelFindings, ...],
        labels: Publisher,
        deadletters: Publisher,
        pseudonym: Pseudonymiser,
        *,
        not_mentioned_negative: bool = True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not models:
            raise ConfigError("no report model configured")
        for model in models:
            try:  # findings the lexicon does not know are a configuration error, found now
                labeler.label("", findings=model.findings)
            except ValueError as exc:
                raise ConfigError(f"report model {model.name}: {exc}") from None
        self.labeler, self.models = labeler, models
        self._labels, self._deadletters, self._pseudonym = labels, deadletters, pseudonym
        self.not_mentioned_negative = not_mentioned_negative
        self._clock = clock
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n
        count_listener("reports", what, n)  # radwatch_listener_events_total (--metrics-addr)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.counts.items()))

    def handle(self, report: ReportMessage) -> Outcome:
        """Publish the report's label events (returns after the broker's ack; raises its error)."""
        if report.status is ResultStatus.PRELIMINARY:
            # Ignored, not kept as provisional: the final report follows and is what counts.
            self.count("preliminary_ignored")
            return Outcome(0, "preliminary")
        events = [e for e in (self.label_event(report, m) for m in self.models) if e is not None]
        if not events:
            self.count("no_findings")
            return Outcome(0, "no_findings")
        # Keyed by the accession's hash: one study stays on one partition without the raw
        # accession in the record key (the value carries it for the collector to pseudonymise).
        key = hashlib.sha256(report.accession.encode("utf-8", "replace")).hexdigest()[:32].encode()
        for event in events:
            self._labels.publish(event, key)
        self.count("final" if report.status is ResultStatus.FINAL else "corrected")
        self.count("label_events", len(events))
        return Outcome(len(events))

    def label_event(self, report: ReportMessage, model: ModelFindings) -> dict[str, Any] | None:
        """The label event for one model, or None when the text says nothing it can use."""
        result = self.labeler.label(report.text, findings=model.findings)
        values = _label_values(result, model.findings, self.not_mentioned_negative)
        if not values:
            return None
        evidence = {}
        spans: Mapping[str, Any] = getattr(result, "evidence", {}) or {}
        for finding in values:
            span = spans.get(finding)
            if span is not None:
                evidence[finding] = {"start": int(span.start), "end": int(span.end),
                                     "sha256": str(span.sha256)}  # fmt: skip
        labeler = {"name": self.labeler.name, "version": self.labeler.version,
                   "fingerprint": self.labeler.fingerprint}  # fmt: skip
        seed = "|".join([model.name, report.standard, report.control_id, report.accession,
                         str(report.status), report.text_sha256, labeler["fingerprint"]])  # fmt: skip
        occurred = report.reported_at or self._clock()
        doc: dict[str, Any] = {
            "schema": LABEL_SCHEMA,
            "event_id": str(uuid.uuid5(_EVENT_NAMESPACE, seed)),
            "occurred_at": occurred.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "model": {"name": model.name},
            "study": {"accession": report.accession},
            "labels": values,
            "source": SOURCE,
            "labeler": labeler,
        }
        if evidence:
            doc["evidence"] = evidence
        return doc

    def dead_letter(self, source: str, raw: bytes | None, error: ReportError, *,
                    position: int = 0, size: int | None = None,
                    accession: str | None = None) -> None:  # fmt: skip
        """Record a refused message: reason, hash and size only (no bytes, no text).

        Published like the collector's dead letters (DESIGN.md §4), with `original_b64`
        left empty on purpose: an HL7 message or FHIR resource carries PID and report text.
        """
        data = raw or b""
        digest = hashlib.sha256(data).hexdigest() if raw is not None else None
        doc: dict[str, Any] = {
            "schema": DEADLETTER_SCHEMA,
            "original_b64": "",
            "original_omitted": "report messages hold PHI; only their hash and size are kept",
            "original_sha256": digest,
            "original_bytes": size if size is not None else len(data),
            "topic": source,
            "partition": 0,
            "offset": int(position),
            "reason": str(error.reason),
            "message": error.message[:500],
        }
        if accession:
            doc["accession_pseudonym"] = self._pseudonym("accession", accession)
        self.count(f"dead_letter:{error.reason}")
        log.warning("dead-lettered %s #%d: %s (%s bytes, sha256 %s)", source, position,
                    error.reason, doc["original_bytes"], (digest or "-")[:16])  # fmt: skip
        self._deadletters.publish(doc, None)


class KafkaTopicPublisher:
    """Publishes to one topic and returns only after the broker's ack (acks=all).

    The delivery of collectors.publisher.EventPublisher (compact UTF-8 JSON, `send(...).get()`
    so an error is raised here, not lost) on a producer this listener shares between its
    label events and its dead letters, which are not contract events for that publisher to
    validate.
    """

    def __init__(self, producer: Any, topic: str, timeout_s: float = 30.0) -> None:
        self._producer, self.topic, self._timeout = producer, topic, timeout_s

    def publish(self, doc: dict[str, Any], key: bytes | None = None) -> None:
        self._producer.send(self.topic, value=orjson.dumps(doc), key=key).get(timeout=self._timeout)


def report_models(settings: Any, option: list[str] | None) -> tuple[ModelFindings, ...]:
    """The models labels are for: `--model` options, else the `report_models` setting."""
    if option:
        return parse_report_models(";".join(option))
    if settings.report_models:
        return parse_report_models(settings.report_models)
    raise ConfigError("which model are the labels for? give --model MODEL[=finding,...] "
                      "or set RADWATCH_REPORT_MODELS")  # fmt: skip


def default_report_labeler() -> Labeler:
    """The default chest-radiography labeler (collectors.labeler, interface 1)."""
    from collectors.labeler import default_labeler

    labeler: Labeler = default_labeler()
    return labeler


class SinkResources:
    """A `ReportLabelSink` wired to the configured (or embedded) broker; close() flushes."""

    def __init__(self, settings: Any, models: tuple[ModelFindings, ...], *,
                 labeler: Labeler | None = None, not_mentioned_negative: bool = True,
                 one_shot: bool = False) -> None:  # fmt: skip
        from collectors.kafka_io import make_producer
        from monitor.services.runtime import kafka_options, resolve_endpoints

        # Topics created, the broker waited for (a service) or tried once (a one-shot command).
        endpoints = resolve_endpoints(settings, retry=not one_shot)
        options = kafka_options(settings, endpoints, client_id="radwatch-reports",
                                one_shot=one_shot)  # fmt: skip
        # linger 0: each publish waits for its ack anyway, so batching only adds latency.
        self._producer = make_producer(options, linger_ms=0)
        self.sink = ReportLabelSink(
            labeler or default_report_labeler(), models,
            KafkaTopicPublisher(self._producer, settings.label_topic),
            KafkaTopicPublisher(self._producer, settings.deadletter_topic),
            Pseudonymiser(settings.key_bytes()),
            not_mentioned_negative=not_mentioned_negative,
        )  # fmt: skip

    def close(self) -> None:
        try:
            self._producer.flush(timeout=30)
        finally:
            self._producer.close(timeout=10)

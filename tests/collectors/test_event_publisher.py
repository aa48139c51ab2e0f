"""collectors.publisher against the real embedded broker: a published event is acknowledged,
consumed with its study key, and parses; what the contract refuses is never sent."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
from conftest import kafka

from collectors.errors import Reason
from collectors.events import LABEL_SCHEMA, InferenceEvent, LabelEvent, parse_record
from collectors.kafka_io import make_consumer
from collectors.pseudonym import Pseudonymiser
from collectors.publisher import EventPublisher, PublishError, record_key, serialise

P = Pseudonymiser(b"publisher-test-key-0123456")
INFERENCE = {"schema": "radwatch.inference.v1", "event_id": "pub-1",
             "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "cxr", "version": "2"},
             "study": {"study_uid": "1.2.826.0.7.1", "accession": "ACC-7"},
             "prediction": {"scores": {"nodule": 0.25}}, "site": "Zürich"}  # fmt: skip
LABEL = {"schema": LABEL_SCHEMA, "event_id": "pub-2", "occurred_at": "2026-11-29T10:15:00Z",
         "model": {"name": "cxr"}, "study": {"accession": "ACC-7"}, "labels": {"nodule": 1}}  # fmt: skip


def consume(settings, topic: str, n: int) -> list:
    reader = replace(kafka(settings), group_id=f"pub-{uuid.uuid4().hex[:6]}")
    consumer = make_consumer(reader, [topic], max_poll_records=50)
    got: list = []
    try:
        for _ in range(60):
            for batch in consumer.poll(timeout_ms=250).values():
                got += batch
            if len(got) >= n:
                break
    finally:
        consumer.close()
    return got


def test_published_events_are_acknowledged_consumed_and_parse(settings) -> None:
    with EventPublisher(settings.kafka_bootstrap, settings.inference_topic) as inferences:
        inferences.publish(INFERENCE)
    with EventPublisher(settings.kafka_bootstrap, settings.label_topic,
                        default_schema=LABEL_SCHEMA) as labels:  # fmt: skip
        labels.publish(LABEL)
    (inf,) = consume(settings, settings.inference_topic, 1)
    (lab,) = consume(settings, settings.label_topic, 1)
    # The contract's serialisation: compact UTF-8 JSON, keyed by study UID (else accession).
    assert inf.value == serialise(INFERENCE) and b'"Z\xc3\xbcrich"' in inf.value
    assert inf.key == b"1.2.826.0.7.1" and lab.key == b"ACC-7"
    event = parse_record(inf.value, default_schema="radwatch.inference.v1", pseudonym=P,
                         max_bytes=1 << 20)  # fmt: skip
    label = parse_record(lab.value, default_schema=LABEL_SCHEMA, pseudonym=P, max_bytes=1 << 20)
    assert isinstance(event, InferenceEvent) and isinstance(label, LabelEvent)
    assert event.study.accession == label.study.accession


def test_what_the_contract_refuses_is_never_sent(settings) -> None:
    with EventPublisher(settings.kafka_bootstrap, settings.inference_topic) as publisher:
        with pytest.raises(PublishError) as refused:
            publisher.publish({**INFERENCE, "prediction": {"scores": {"nodule": 1.5}}})
        assert refused.value.reason == Reason.SCORE_OUT_OF_RANGE
        with pytest.raises(PublishError) as nan:
            publisher.publish({**INFERENCE, "latency_ms": float("nan")})
        assert nan.value.reason == Reason.NOT_JSON
        with pytest.raises(PublishError) as no_study:
            publisher.publish({k: v for k, v in INFERENCE.items() if k != "study"})
        assert no_study.value.reason == Reason.MISSING_FIELD
        assert "ACC-7" not in str(no_study.value)
        publisher.publish(INFERENCE)  # a sentinel: the topic's first record must be this one
    (first, *rest) = consume(settings, settings.inference_topic, 1)
    assert first.value == serialise(INFERENCE) and rest == []


def test_serialisation_is_deterministic_so_a_retry_is_a_replay() -> None:
    again = json.loads(serialise(INFERENCE))
    assert serialise(again) == serialise(INFERENCE)
    assert record_key({"study": {"study_uid": "", "accession": 42}}) == b"42"
    assert record_key({"study": "x"}) is None

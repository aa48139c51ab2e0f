"""Wire contract v1 parsing: every kind of bad input gets its own reason code."""

from __future__ import annotations

import json
import math

import pytest

from collectors.events import (
    INFERENCE_SCHEMA,
    InferenceEvent,
    LabelEvent,
    Reason,
    Rejection,
    parse_record,
)
from collectors.pseudonym import Pseudonymiser

P = Pseudonymiser(b"unit-test-key-0123456789")


def inference(**overrides) -> dict:
    doc = {
        "schema": "radwatch.inference.v1",
        "event_id": "0b6f8a0e-1c2d-4d0e-9a51-0f5c3e2b7a10",
        "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"},
        "site": "north-general",
        "study": {"study_uid": "1.2.840.1", "series_uid": "1.2.840.2", "sop_uid": "1.2.840.3",
                  "accession": "A123", "patient_id": "P999"},
        "dicom": {"Modality": "DX", "Manufacturer": "ACME", "PatientAge": "063Y",
                  "PatientName": "DOE^JANE", "KVP": 110, "PixelSpacing": [0.15, 0.15]},
        "image": {"uri": "file:///data/P999/a.dcm"},
        "embedding": [0.12, -0.4],
        "prediction": {"scores": {"nodule": 0.83}, "threshold": {"nodule": 0.5}},
        "latency_ms": 140,
    }  # fmt: skip
    doc.update(overrides)
    return doc


def parse(value: bytes | dict | list | str, max_bytes: int = 100_000):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_record(raw, default_schema=INFERENCE_SCHEMA, pseudonym=P, max_bytes=max_bytes)


def test_valid_inference_is_pseudonymised_and_reduced_to_the_allow_list():
    event = parse(inference(extra_field={"note": "kept", "patient_id": "P999"}))
    assert isinstance(event, InferenceEvent)
    assert event.study.study == P("study_uid", "1.2.840.1")
    assert event.study.patient == P("patient_id", "P999")
    assert event.dicom["AgeBand"] == "60-74"
    assert "PatientName" not in event.dicom and "PatientAge" not in event.dicom
    assert event.scores == {"nodule": 0.83}
    assert event.embedding == (0.12, -0.4)
    # Unknown fields are kept, identifier-named keys inside them redacted.
    assert event.extra["extra_field"]["note"] == "kept"
    assert "P999" not in json.dumps(event.extra)
    assert "P999" not in repr(event)  # the raw URI is held but never shown


def test_content_hash_tells_a_replay_from_a_changed_event():
    a, replay = parse(inference()), parse(inference())
    changed = parse(inference(site="elsewhere"))
    assert isinstance(a, InferenceEvent) and isinstance(replay, InferenceEvent)
    assert isinstance(changed, InferenceEvent)
    assert a.content_hash == replay.content_hash != changed.content_hash


def _without(path: str) -> dict:
    doc = inference()
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    del node[leaf]
    return doc


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe not utf8", Reason.NOT_UTF8),
        (b"{not json", Reason.NOT_JSON),
        ([1, 2, 3], Reason.NOT_OBJECT),
        ("a string", Reason.NOT_OBJECT),
        (inference(schema="radwatch.inference.v9"), Reason.UNKNOWN_SCHEMA),
        (_without("event_id"), Reason.MISSING_FIELD),
        (_without("model"), Reason.MISSING_FIELD),
        (_without("occurred_at"), Reason.MISSING_FIELD),
        (_without("study.study_uid"), Reason.MISSING_FIELD),
        (_without("prediction.scores"), Reason.MISSING_FIELD),
        (inference(event_id=42), Reason.WRONG_TYPE),
        (inference(model="cxr"), Reason.WRONG_TYPE),
        (inference(prediction={"scores": {"nodule": "high"}}), Reason.WRONG_TYPE),
        (inference(prediction={"scores": {"nodule": True}}), Reason.WRONG_TYPE),
        (inference(embedding="0.1,0.2"), Reason.WRONG_TYPE),
        (inference(prediction={"scores": {"nodule": 1.5}}), Reason.SCORE_OUT_OF_RANGE),
        (inference(prediction={"scores": {"nodule": -0.1}}), Reason.SCORE_OUT_OF_RANGE),
        (inference(occurred_at="yesterday"), Reason.BAD_TIMESTAMP),
    ],
)
def test_bad_input_gets_its_reason(value, reason):
    result = parse(value)
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    assert result.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_scores_are_rejected(literal):
    raw = json.dumps(inference()).replace("0.83", literal).encode()
    result = parse(raw)
    assert isinstance(result, Rejection) and result.reason == Reason.SCORE_NOT_FINITE


def test_value_over_the_configured_maximum_is_rejected_before_parsing():
    result = parse(inference(), max_bytes=100)
    assert isinstance(result, Rejection) and result.reason == Reason.TOO_LARGE


def test_missing_field_message_names_the_field():
    result = parse(_without("study.study_uid"))
    assert isinstance(result, Rejection) and "study.study_uid" in result.message


def test_label_for_unknown_finding_is_kept_and_joins_by_study_pseudonym():
    doc = {"schema": "radwatch.label.v1", "event_id": "l-1", "occurred_at": "2026-11-29T08:00:00+01:00",
           "model": {"name": "cxr-nodule"}, "study": {"study_uid": "1.2.840.1"},
           "labels": {"pneumothorax": 1, "nodule": False}, "source": "radiologist-report"}  # fmt: skip
    label = parse(doc)
    assert isinstance(label, LabelEvent)
    assert label.labels == {"pneumothorax": 1, "nodule": 0}
    assert label.occurred_at.utcoffset().total_seconds() == 0 and label.occurred_at.hour == 7
    event = parse(inference())
    assert isinstance(event, InferenceEvent) and event.study.study == label.study.study


def test_label_values_must_be_binary():
    doc = {"schema": "radwatch.label.v1", "event_id": "l-2", "occurred_at": "2026-11-29T08:00:00Z",
           "model": {"name": "m"}, "study": {"study_uid": "1"}, "labels": {"nodule": 0.7}}  # fmt: skip
    result = parse(doc)
    assert isinstance(result, Rejection) and result.reason == Reason.WRONG_TYPE


def test_pseudonyms_depend_on_the_key():
    other = Pseudonymiser(b"another-key-0123456789")
    assert P("study_uid", "1.2.3") != other("study_uid", "1.2.3")
    assert P("study_uid", "1.2.3") != P("sop_uid", "1.2.3")  # domain separated
    assert not math.isnan(len(P("x", "y")))

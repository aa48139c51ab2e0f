"""Wire contract v1 parsing: every kind of bad input gets its own reason code."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from collectors.bounded_json import ParseLimits
from collectors.errors import Reason
from collectors.events import (
    INFERENCE_SCHEMA,
    InferenceEvent,
    LabelEvent,
    Rejection,
    dead_letter_skeleton,
    parse_record,
)
from collectors.pseudonym import Pseudonymiser

P = Pseudonymiser(b"unit-test-key-0123456789")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
# The collector's limits with a fixed clock, so the timestamp window is reproducible.
LIMITS = ParseLimits(max_past=timedelta(days=3650), max_future=timedelta(hours=24),
                     clock=lambda: NOW)  # fmt: skip


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


def parse(value: bytes | dict | list | str, max_bytes: int = 100_000, limits: ParseLimits = LIMITS):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_record(
        raw, default_schema=INFERENCE_SCHEMA, pseudonym=P, max_bytes=max_bytes, limits=limits
    )


def test_valid_inference_is_pseudonymised_and_reduced_to_the_allow_list():
    event = parse(
        inference(extra_field={"kept": "yes", "note": "free text", "patient_id": "P999"},
                  not_allowed={"kept": "no"}),
        limits=ParseLimits(extra_fields=frozenset({"extra_field", "PatientName"})),
    )  # fmt: skip
    assert isinstance(event, InferenceEvent)
    assert event.study.study == P("study_uid", "1.2.840.1")
    assert event.study.patient == P("patient_id", "P999")
    assert event.dicom["AgeBand"] == "60-74"
    assert "PatientName" not in event.dicom and "PatientAge" not in event.dicom
    assert event.scores == {"nodule": 0.83}
    assert event.embedding == (0.12, -0.4)
    # Only allow-listed extra fields are kept, without identifier-looking keys inside them.
    assert event.extra == {"extra_field": {"kept": "yes"}}
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


def _deep(depth: int) -> str:
    """JSON text of `depth` nested arrays (json.dumps itself recurses, so text it is)."""
    return "[" * depth + "1" + "]" * depth


def _with_raw(doc: dict, marker: str, raw_value: str) -> bytes:
    """The event's JSON with the string `marker` replaced by raw JSON text."""
    return json.dumps(doc).replace(json.dumps(marker), raw_value).encode()


BIG = "9" * 400


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 200_000 + b"]" * 200_000, Reason.TOO_DEEP),
        (_with_raw(inference(extra="X"), "X", _deep(300)), Reason.TOO_DEEP),
        (_with_raw(inference(extra="X"), "X", _deep(1000)), Reason.TOO_DEEP),
        (_with_raw(inference(extra="X"), "X", _deep(33)), Reason.TOO_DEEP),
        (b"1" * 5000, Reason.NUMBER_TOO_LARGE),
        (_with_raw(inference(extra="X"), "X", "1" * 5000), Reason.NUMBER_TOO_LARGE),
        (_with_raw(inference(prediction={"scores": {"n": "X"}}), "X", BIG), Reason.NUMBER_TOO_LARGE),
        (_with_raw(inference(latency_ms="X"), "X", BIG), Reason.NUMBER_TOO_LARGE),
        (_with_raw(inference(embedding=[0.1, "X"]), "X", BIG), Reason.NUMBER_TOO_LARGE),
        (_with_raw(inference(dicom={"KVP": "X"}), "X", BIG), Reason.NUMBER_TOO_LARGE),
        (_with_raw(inference(study={"study_uid": "X"}), "X", '"\\ud800"'), Reason.BAD_UNICODE),
        (_with_raw(inference(model={"name": "X"}), "X", '"a\\udc00b"'), Reason.BAD_UNICODE),
        (_with_raw(inference(extra="X"), "X", '"\\ud800"'), Reason.BAD_UNICODE),
        (json.dumps(inference(extra="x" * 5000)).encode(), Reason.STRING_TOO_LONG),
        (json.dumps(inference(extra={"k" * 300: 1})).encode(), Reason.STRING_TOO_LONG),
        (json.dumps(inference(extra={str(i): i for i in range(1025)})).encode(),
         Reason.TOO_MANY_KEYS),
        (json.dumps(inference(extra=[[0] * 1000] * 70)).encode(), Reason.TOO_MANY_KEYS),
        (json.dumps(inference(occurred_at="0001-01-01T00:30:00+01:00")).encode(),
         Reason.BAD_TIMESTAMP),
        (json.dumps(inference(occurred_at="9999-12-31T23:30:00-01:00")).encode(),
         Reason.BAD_TIMESTAMP),
        (json.dumps(inference(occurred_at="2016-11-01T00:00:00Z")).encode(), Reason.BAD_TIMESTAMP),
        (json.dumps(inference(occurred_at="2026-12-02T00:00:00Z")).encode(), Reason.BAD_TIMESTAMP),
        (json.dumps(inference(extra="a\u0000b")).encode(), Reason.NUL_CHARACTER),
    ],
)  # fmt: skip
def test_limits_are_enforced_while_decoding_with_their_own_reason(raw, reason):
    result = parse(raw, max_bytes=1 << 20)
    assert isinstance(result, Rejection), result
    assert result.reason == reason, result


def test_the_timestamp_window_is_relative_to_now_and_configurable():
    assert isinstance(parse(inference(occurred_at="2026-12-01T11:00:00Z")), InferenceEvent)
    assert isinstance(parse(inference(occurred_at="2017-01-01T00:00:00Z")), InferenceEvent)
    wider = ParseLimits(max_future=timedelta(days=400), clock=lambda: NOW)
    assert isinstance(parse(inference(occurred_at="2027-12-01T00:00:00Z"), limits=wider),
                      InferenceEvent)  # fmt: skip


def test_image_uri_is_exempt_from_the_string_limit_but_not_from_the_size_limit():
    uri = "data:application/octet-stream;base64," + "A" * 20_000
    assert isinstance(parse(inference(image={"uri": uri})), InferenceEvent)
    refused = parse(inference(image={"uri": uri}), max_bytes=10_000)
    assert isinstance(refused, Rejection) and refused.reason == Reason.TOO_LARGE


def test_messages_never_repeat_event_values():
    marker = "PHIMARKER-7f3a"
    cases = [
        inference(schema=marker),
        inference(occurred_at=marker),
        inference(prediction={"scores": {marker: 7}}),
        inference(prediction={"scores": {marker: "high"}}),
        {"schema": "radwatch.label.v1", "event_id": "l", "occurred_at": "2026-11-29T08:00:00Z",
         "model": {"name": "m"}, "study": {"study_uid": "1"}, "labels": {marker: 5}},
    ]  # fmt: skip
    for doc in cases:
        result = parse(doc)
        assert isinstance(result, Rejection), result
        assert marker not in result.message


def test_top_level_phi_and_label_free_text_are_not_kept():
    doc = inference(PatientName="PHIMARKER-a", patient_name="PHIMARKER-b", notes="PHIMARKER-c",
                    patient={"name": "PHIMARKER-d", "birth_date": "1961", "mrn": "PHIMARKER-e"})  # fmt: skip
    everything = ParseLimits(extra_fields=frozenset(doc) | {"patient"})
    event = parse(doc, limits=everything)
    assert isinstance(event, InferenceEvent)
    # Even allow-listed, keys that look like identifiers are dropped with their values.
    assert "PHIMARKER" not in repr(event.extra) and "patient" not in json.dumps(event.extra)
    label = {"schema": "radwatch.label.v1", "event_id": "l-9", "occurred_at": "2026-11-29T08:00:00Z",
             "model": {"name": "m"}, "study": {"study_uid": "1"}, "labels": {"nodule": 1},
             "source": "Dr PHIMARKER-f", "comment": "PHIMARKER-g"}  # fmt: skip
    parsed = parse(label)
    assert isinstance(parsed, LabelEvent)
    assert parsed.source == "other" and parsed.extra == {}


@pytest.mark.parametrize(
    ("source", "kept"),
    [("radiologist-report", "radiologist-report"), ("Report-Labeler", "report-labeler"),
     ("pathology", "pathology"), ("Dr Smith's dictation", "other"), (None, None)],
)  # fmt: skip
def test_label_source_comes_from_a_bounded_vocabulary(source, kept):
    label = {"schema": "radwatch.label.v1", "event_id": "l-3", "occurred_at": "2026-11-29T08:00:00Z",
             "model": {"name": "m"}, "study": {"study_uid": "1"}, "labels": {"nodule": 1},
             "source": source}  # fmt: skip
    parsed = parse(label)
    assert isinstance(parsed, LabelEvent) and parsed.source == kept


def test_dicom_keeps_only_the_allow_list_and_our_own_age_bands():
    event = parse(inference(dicom={"Modality": "DX", "PatientAddress": "PHIMARKER-1",
                                   "OperatorsName": "PHIMARKER-2", "StudyDescription": "PHIMARKER-3",
                                   "AgeBand": "PHIMARKER-4", "Manufacturer": {"x": "PHIMARKER-5"},
                                   "KVP": 1e300}))  # fmt: skip
    assert isinstance(event, InferenceEvent)
    assert "PHIMARKER" not in json.dumps(event.dicom)
    assert event.dicom == {"Modality": "DX", "KVP": 1e300}


def test_dead_letter_skeleton_keeps_only_known_fields_reduced():
    doc = inference(
        prediction={"scores": {"nodule": 7}}, PatientName="PHIMARKER-1", notes="PHIMARKER-2",
        dicom={"Modality": "CT", "PatientAddress": "PHIMARKER-3", "OperatorsName": "PHIMARKER-4",
               "StudyDescription": "PHIMARKER-5", "PatientAge": "063Y"},
        study={"study_uid": "PHIMARKER-6", "patient_id": "PHIMARKER-7"},
        image={"uri": "file:///PHIMARKER-8/a.dcm"}, site="north",
    )  # fmt: skip
    skeleton = dead_letter_skeleton(json.dumps(doc).encode(), P)
    assert skeleton is not None
    assert "PHIMARKER" not in json.dumps(skeleton)
    assert skeleton["event_id"] == doc["event_id"]
    assert skeleton["dicom"] == {"Modality": "CT", "AgeBand": "60-74"}
    assert skeleton["study"]["study_uid"] == "pseudo:" + P("study_uid", "PHIMARKER-6")
    assert skeleton["prediction"] == {"scores": [7.0]}
    assert skeleton["extra_fields"] == 2
    for hostile in (b"[" * 200_000, b"1" * 5000, b'{"a": "\\ud800"}', b"\xff", b'{"a": NaN}',
                    ('{"a": ' + _deep(300) + "}").encode(), b'{"a": "\\u0000"}', b"[]"):  # fmt: skip
        assert dead_letter_skeleton(hostile, P) is None

"""Label events by accession and their provenance (contract v1, compatible additions).

A label may name its study by accession alone; one naming neither study_uid nor accession is
refused with a reason; `labeler` and `evidence` are checked (sizes, hex SHA-256, offsets) and
refused with a reason code, never kept half-read. Messages never repeat event values.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from collectors.errors import Reason
from collectors.events import (
    INFERENCE_SCHEMA,
    LABEL_SCHEMA,
    InferenceEvent,
    LabelEvent,
    Rejection,
    parse_record,
)
from collectors.pseudonym import Pseudonymiser

P = Pseudonymiser(b"label-events-test-key-0123")
DIGEST = "c0ffee" + "0" * 58


def label(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": LABEL_SCHEMA, "event_id": "l-1", "occurred_at": "2026-11-29T08:00:00Z",
        "model": {"name": "cxr"}, "study": {"accession": "ACC-SECRET-1"},
        "labels": {"pneumothorax": 1}, "source": "report-labeler",
        "labeler": {"name": "negex", "version": "1.0", "fingerprint": DIGEST},
        "evidence": {"pneumothorax": {"start": 0, "end": 31, "sha256": DIGEST}},
    }  # fmt: skip
    doc.update(overrides)
    return doc


def parse(doc: dict[str, Any], schema: str = LABEL_SCHEMA) -> object:
    return parse_record(json.dumps(doc).encode(), default_schema=schema, pseudonym=P,
                        max_bytes=100_000)  # fmt: skip


def test_a_label_by_accession_carries_the_inference_paths_accession_pseudonym() -> None:
    event = parse(label())
    assert isinstance(event, LabelEvent)
    assert event.study.study is None
    inference = parse({"event_id": "i-1", "occurred_at": "2026-11-28T08:00:00Z",
                       "model": {"name": "cxr"},
                       "study": {"study_uid": "1.2.3", "accession": "ACC-SECRET-1"},
                       "prediction": {"scores": {"pneumothorax": 0.9}}}, INFERENCE_SCHEMA)  # fmt: skip
    assert isinstance(inference, InferenceEvent)
    assert event.study.accession == inference.study.accession == P("accession", "ACC-SECRET-1")
    assert event.labeler is not None and event.labeler.fingerprint == DIGEST
    assert event.evidence["pneumothorax"].end == 31
    assert "ACC-SECRET-1" not in repr(event)


def test_an_integer_accession_is_the_same_key_as_its_text() -> None:
    a, b = parse(label(study={"accession": 1234})), parse(label(study={"accession": "1234"}))
    assert isinstance(a, LabelEvent) and isinstance(b, LabelEvent)
    assert a.study.accession == b.study.accession


@pytest.mark.parametrize(
    ("overrides", "reason", "says"),
    [
        ({"study": {}}, Reason.MISSING_FIELD, "study.study_uid or study.accession"),
        ({"study": {"series_uid": "1.2", "patient_id": "P1"}}, Reason.MISSING_FIELD,
         "study.study_uid or study.accession"),
        ({"study": {"accession": "  "}}, Reason.WRONG_TYPE, "study.accession"),
        ({"study": {"accession": True}}, Reason.WRONG_TYPE, "study.accession"),
        ({"study": {"accession": "A" * 257}}, Reason.WRONG_TYPE, "study.accession"),
        ({"labeler": "negex"}, Reason.WRONG_TYPE, "labeler"),
        ({"labeler": {"name": "negex", "version": "1"}}, Reason.MISSING_FIELD, "labeler.fingerprint"),
        ({"labeler": {"name": "negex", "version": "1", "fingerprint": "abc"}}, Reason.WRONG_TYPE,
         "labeler.fingerprint"),
        ({"labeler": {"name": "negex", "version": "1", "fingerprint": DIGEST + "\n"}},
         Reason.WRONG_TYPE, "labeler.fingerprint"),
        ({"labeler": {"name": "", "version": "1", "fingerprint": DIGEST}}, Reason.WRONG_TYPE,
         "labeler.name"),
        ({"labeler": {"name": "n" * 129, "version": "1", "fingerprint": DIGEST}},
         Reason.WRONG_TYPE, "labeler.name"),
        ({"evidence": {"x": {"start": -1, "end": 3, "sha256": DIGEST}}}, Reason.WRONG_TYPE,
         "evidence.start"),
        ({"evidence": {"x": {"start": 1.0, "end": 3, "sha256": DIGEST}}}, Reason.WRONG_TYPE,
         "evidence.start"),
        ({"evidence": {"x": {"start": 9, "end": 3, "sha256": DIGEST}}}, Reason.WRONG_TYPE,
         "evidence.end"),
        ({"evidence": {"x": {"start": 0, "end": 10_000_001, "sha256": DIGEST}}}, Reason.WRONG_TYPE,
         "evidence.end"),
        ({"evidence": {"x": {"start": 0, "end": 3}}}, Reason.MISSING_FIELD, "evidence.sha256"),
        ({"evidence": {"x": {"start": 0, "end": 3, "sha256": "z" * 64}}}, Reason.WRONG_TYPE,
         "evidence.sha256"),
        ({"evidence": {"x": [0, 3]}}, Reason.WRONG_TYPE, "evidence"),
        ({"evidence": {f"f{i}": {"start": 0, "end": 1, "sha256": DIGEST} for i in range(65)}},
         Reason.WRONG_TYPE, "evidence"),
    ],
)  # fmt: skip
def test_bad_labels_by_accession_and_provenance_get_their_reason(
    overrides: dict[str, Any], reason: Reason, says: str
) -> None:
    result = parse(label(**overrides))
    assert isinstance(result, Rejection), result
    assert result.reason == reason and says in result.message
    assert "ACC-SECRET-1" not in result.message and "negex" not in result.message


def test_an_inference_still_needs_its_study_uid() -> None:
    result = parse({"event_id": "i-2", "occurred_at": "2026-11-28T08:00:00Z",
                    "model": {"name": "cxr"}, "study": {"accession": "A1"},
                    "prediction": {"scores": {"a": 0.5}}}, INFERENCE_SCHEMA)  # fmt: skip
    assert isinstance(result, Rejection) and result.reason == Reason.MISSING_FIELD
    assert "study.study_uid" in result.message

"""Property-based tests of the edge (Hypothesis): no bytes get past the parser as an exception.

For arbitrary bytes, and for arbitrary JSON trees (deep, wide, huge numbers, lone
surrogates, NUL, odd keys) planted anywhere in an otherwise valid inference or label event,
`parse_record` returns an event or a rejection, and the dead-letter write's two pieces
(`DeadLetter.redacted_payload`, `DeadLetter.topic_value`) return something storable.
Runs are derandomized (a fixed seed per test) with the example counts stated below.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collectors.bounded_json import ParseLimits
from collectors.errors import Reason
from collectors.events import (
    INFERENCE_SCHEMA,
    LABEL_SCHEMA,
    InferenceEvent,
    LabelEvent,
    Rejection,
    parse_record,
)
from collectors.pseudonym import Pseudonymiser, is_identifier_key
from monitor.ingest.batch_store import DeadLetter, Position, Record

P = Pseudonymiser(b"fuzz-test-key-0123456789")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LIMITS = ParseLimits(
    max_past=timedelta(days=3650),
    max_future=timedelta(hours=24),
    # Allow-listed, so the redaction of kept extra fields is exercised too.
    extra_fields=frozenset({"extra", "x", "PatientName"}),
    clock=lambda: NOW,
)
MAX_BYTES = 1 << 20
FUZZ = settings(
    max_examples=250,
    derandomize=True,  # the same examples on every run: a failure is reproducible
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass(frozen=True)
class Deep:
    """`inner` wrapped in `depth` arrays or objects; encoded as text (json.dumps recurses)."""

    depth: int
    kind: str
    inner: Any


# Strings: any code point including lone surrogates (Cs) and NUL, plus a few known offenders.
TEXT = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["\ud800", "a\udc00b", "\x00", "PatientName", "1.2.840.10008", "9999-12-31T23:59:59-01:00",
     "0001-01-01T00:00:00+01:00", "NaN", "x" * 5000]
)  # fmt: skip
KEYS = TEXT | st.sampled_from(
    ["patient_id", "PatientName", "name", "notes", "mrn", "uid", "k" * 300]
)
NUMBERS = (
    st.integers(min_value=-(10**1000), max_value=10**1000)
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**20, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
)
LEAVES = st.none() | st.booleans() | NUMBERS | TEXT
TREES = st.recursive(
    LEAVES,
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(KEYS, kids, max_size=6),
    max_leaves=25,
)
DEEP = st.builds(Deep, st.integers(0, 1500), st.sampled_from(["list", "dict"]), TREES)
WIDE = st.integers(0, 2000).map(lambda n: {str(i): i for i in range(n)}) | st.integers(
    0, 70_000
).map(lambda n: [0] * n)
HOSTILE = TREES | DEEP | WIDE


def encode(value: Any, ascii_only: bool) -> str:
    """JSON text of `value`, NaN/Infinity and lone surrogates included, depth without recursion."""
    if isinstance(value, Deep):
        opening, closing = ("[", "]") if value.kind == "list" else ('{"d":', "}")
        return opening * value.depth + encode(value.inner, ascii_only) + closing * value.depth
    if isinstance(value, dict):
        items = (f"{encode(str(k), ascii_only)}:{encode(v, ascii_only)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)


def inference() -> dict[str, Any]:
    return {
        "schema": INFERENCE_SCHEMA, "event_id": "fz-1", "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr-nodule", "version": "1"}, "site": "north",
        "study": {"study_uid": "1.2.3", "accession": "A1", "patient_id": "P1"},
        "dicom": {"Modality": "DX", "KVP": 110, "PatientAge": "063Y", "PixelSpacing": [0.1, 0.1]},
        "image": {"uri": "file:///x/a.dcm"}, "embedding": [0.1, 0.2, 0.3],
        "prediction": {"scores": {"nodule": 0.8}, "threshold": {"nodule": 0.5}},
        "latency_ms": 140,
    }  # fmt: skip


def label() -> dict[str, Any]:
    return {
        "schema": LABEL_SCHEMA, "event_id": "fz-2", "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr-nodule"}, "study": {"study_uid": "1.2.3"},
        "labels": {"nodule": 1}, "source": "radiologist-report",
    }  # fmt: skip


# Where a hostile tree is planted: a path into the event (the last step may be new).
SPOTS = [
    (), ("extra",), ("x",), ("PatientName",), ("schema",), ("event_id",), ("occurred_at",),
    ("model",), ("model", "name"), ("site",), ("study",), ("study", "study_uid"),
    ("study", "patient_id"), ("dicom",), ("dicom", "KVP"), ("dicom", "Modality"),
    ("dicom", "PatientAge"), ("dicom", "AgeBand"), ("dicom", "PixelSpacing"),
    ("dicom", "StationName"), ("image",), ("image", "uri"), ("embedding",), ("embedding", 1),
    ("prediction",), ("prediction", "scores"), ("prediction", "scores", "nodule"),
    ("prediction", "threshold", "nodule"), ("latency_ms",), ("labels",), ("labels", "nodule"),
    ("source",),
]  # fmt: skip


def plant(doc: dict[str, Any], spot: tuple, value: Any) -> Any:
    if not spot:
        return value
    node: Any = doc
    for step in spot[:-1]:
        node = node[step]
    node[spot[-1]] = value
    return doc


def check_dead_letter(raw: bytes, reason: Reason, message: str) -> None:
    letter = DeadLetter(Record(Position("t", 0, 7), raw, b"k"), reason, message)
    payload = letter.redacted_payload(P)
    if payload is not None:
        # What psycopg will send: the same encoder, so storable means encodable here.
        encoded = orjson.dumps(payload.obj)
        assert b"\\u0000" not in encoded
    value = json.loads(letter.topic_value())
    assert base64.b64decode(value["original_b64"]) == raw
    assert value["reason"] == str(reason)


def check(raw: bytes) -> None:
    result = parse_record(
        raw, default_schema=INFERENCE_SCHEMA, pseudonym=P, max_bytes=MAX_BYTES, limits=LIMITS
    )
    event(type(result).__name__ + (f": {result.reason}" if isinstance(result, Rejection) else ""))
    if isinstance(result, Rejection):
        assert isinstance(result.reason, Reason)
        result.message.encode("utf-8")  # valid Unicode: it is stored as text
        assert "\x00" not in result.message
        check_dead_letter(raw, result.reason, result.message)
        return
    assert isinstance(result, InferenceEvent | LabelEvent)
    # What the ingest store writes as jsonb must encode, and hold no identifier-looking key.
    orjson.dumps(dict(result.extra))
    stack: list[Any] = [dict(result.extra)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            assert not any(is_identifier_key(k) for k in node), node.keys()
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert NOW - timedelta(days=3650) <= result.occurred_at <= NOW + timedelta(hours=24)
    if isinstance(result, InferenceEvent):
        orjson.dumps([dict(result.dicom), dict(result.scores), dict(result.thresholds)])
        if result.latency_ms is not None:
            assert result.latency_ms >= 0
    # Even an accepted record must survive the dead-letter path (conflicts are written too).
    check_dead_letter(raw, Reason.DUPLICATE_CONFLICT, "conflict")


@FUZZ
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_never_raise(raw):
    check(raw)


JSONISH = st.lists(
    st.sampled_from([b"[", b"]", b"{", b"}", b'"', b":", b",", b"\\", b"\\ud800", b"\\udc00",
                     b"\\u0000", b"1" * 30, b"NaN", b"-Infinity", b"e999", b"true", b"null",
                     b"\xed\xa0\x80", b"\xff", b'"a"', b"0.5", b" "]),
    max_size=400,
).map(b"".join)  # fmt: skip


@FUZZ
@given(JSONISH)
def test_json_like_bytes_never_raise(raw):
    check(raw)


@FUZZ
@given(
    st.sampled_from([inference, label]),
    st.sampled_from(SPOTS),
    HOSTILE,
    st.booleans(),
)
def test_hostile_trees_planted_in_valid_events_never_raise(make, spot, tree, ascii_only):
    doc = make()
    try:
        planted = plant(doc, spot, tree)
    except (KeyError, IndexError, TypeError):
        return  # a label has no `dicom` or `prediction` to plant into
    raw = encode(planted, ascii_only).encode("utf-8", "surrogatepass")
    check(raw)


@FUZZ
@given(st.dictionaries(KEYS, HOSTILE, max_size=4), st.booleans())
def test_extra_fields_of_any_shape_never_raise_and_keep_no_identifier_keys(extra, ascii_only):
    doc = inference()
    doc.update({f"x{k}" if k in doc else k: v for k, v in extra.items()})
    doc["extra"] = extra
    check(encode(doc, ascii_only).encode("utf-8", "surrogatepass"))

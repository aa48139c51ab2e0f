"""The typed fast path (collectors.typed_events) agrees with the reference path, record by record.

For a Hypothesis corpus of contract-v1 events whose fields are each either valid or replaced by
an odd value (wrong types, bools, integers beyond 64 bits, numbers at the edges of [0, 1],
NaN/Infinity literals, lone surrogates, NUL, long strings, unknown keys, duplicate keys), and
of such records with bytes overwritten: whenever the fast path returns an event it equals the
reference path's, and `parse_record` returns exactly what the reference path returns
(same event, or same reason code and message). Runs are derandomized (fixed seed), 200
examples each.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collectors import typed_events
from collectors.bounded_json import ParseLimits
from collectors.events import (
    INFERENCE_SCHEMA,
    LABEL_SCHEMA,
    InferenceEvent,
    LabelEvent,
    parse_record,
    parse_reference,
)
from collectors.pseudonym import Pseudonymiser

P = Pseudonymiser(b"typed-test-key-0123456789")
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
LIMITS = ParseLimits(max_past=timedelta(days=3650), max_future=timedelta(hours=24),
                     extra_fields=frozenset({"note", "ward"}), clock=lambda: NOW)  # fmt: skip
MAX_BYTES = 1 << 20
CORPUS = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ODD = st.sampled_from(
    [None, "radwatch.inference.v1", "radwatch.label.v1", "1990-01-01T00:00:00Z",
     "2026-12-30T00:00:00Z", True, False, 0, 1, -1, 1.0, 0.5, -0.0, 1.0000001, 2**63, 2**64, 2**64 - 1, -(2**63) - 1,
     10**30, 1e308, "", " ", "x" * 300, "y" * 5000, "\ud800", "a\x00b", "2026-11-28T10:15:00Z",
     "9999-12-31T23:59:59-01:00", [], [1, 2], {}, {"a": 1}, {"a": {"b": {"c": [1]}}}]
)  # fmt: skip
# Any code point, lone surrogates and NUL included (odd values) / no surrogates (valid ones).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
NAMES = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
PLAIN = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=12)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """The valid value 24 times in 25, else an odd one (so a whole record is often valid).

    The odd choice is the largest integer: Hypothesis leans to small ones, toward valid.
    """
    return st.integers(0, 24).flatmap(lambda i: st.one_of(ODD, TEXT) if i == 24 else valid)


UNIT = st.one_of(st.floats(0.0, 1.0), st.integers(0, 1), st.sampled_from([0.0, 1.0, 1e-300]))
IDS = st.one_of(st.from_regex(r"\A[0-9.]{1,64}\Z"), NAMES.map(lambda t: t + "x"),
                st.integers(-(2**63), 2**64 - 1))  # fmt: skip
# Derived-label provenance (labeler, evidence): digests of either case, a trailing newline,
# offsets at and past the bounds (collectors.event_types.MAX_SPAN_OFFSET).
SHA256 = st.one_of(st.from_regex(r"\A[0-9a-fA-F]{64}\Z"), st.just("ab" * 32 + "\n"),
                   st.just("g" * 64))  # fmt: skip
OFFSETS = st.one_of(st.integers(0, 500), st.sampled_from([-1, 10_000_000, 10_000_001, 2**64]))
DICOM = st.dictionaries(
    st.sampled_from(["Modality", "Manufacturer", "KVP", "PixelSpacing", "PatientAge", "StationName",
                     "WindowCenter", "PatientName", "AgeBand"]),
    st.one_of(ODD, NAMES, st.lists(st.floats(0.01, 2.0), max_size=3), st.integers(0, 200)),
    max_size=6,
)  # fmt: skip


@st.composite
def inference_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": draw(maybe(st.just(INFERENCE_SCHEMA))),
        "event_id": draw(maybe(st.uuids().map(str))),
        "occurred_at": draw(
            maybe(
                st.sampled_from(
                    ["2026-11-28T10:15:00Z", "2026-11-28T10:15:00", "2026-11-28 10:15:00+02:00"]
                )
            )
        ),  # fmt: skip
        "model": draw(
            maybe(
                st.fixed_dictionaries(
                    {"name": maybe(st.just("cxr")), "version": maybe(st.just("1.4"))}
                )
            )
        ),  # fmt: skip
        "site": draw(maybe(NAMES)),
        "study": draw(
            maybe(
                st.fixed_dictionaries(
                    {"study_uid": maybe(IDS.map(str))},
                    optional={
                        k: maybe(IDS) for k in ("series_uid", "sop_uid", "accession", "patient_id")
                    },
                )
            )
        ),  # fmt: skip
        "dicom": draw(maybe(DICOM)),
        "image": draw(maybe(st.fixed_dictionaries({}, optional={"uri": maybe(NAMES)}))),
        "embedding": draw(
            maybe(
                st.lists(st.one_of(st.floats(-10, 10), st.integers(-5, 5)), min_size=1, max_size=8)
            )
        ),  # fmt: skip
        "prediction": draw(
            maybe(
                st.fixed_dictionaries(
                    {"scores": maybe(st.dictionaries(NAMES, maybe(UNIT), min_size=1, max_size=3))},
                    optional={"threshold": maybe(st.dictionaries(NAMES, maybe(UNIT), max_size=2))},
                )
            )
        ),  # fmt: skip
        "latency_ms": draw(maybe(st.floats(0, 1e4))),
    }
    if draw(st.integers(0, 9)) == 9:
        del doc[draw(st.sampled_from(sorted(doc)))]  # a missing field
    if draw(st.integers(0, 9)) == 9:
        doc[draw(st.sampled_from(["note", "ward", "x"]))] = draw(ODD)  # unknown fields
    return doc


@st.composite
def label_docs(draw: st.DrawFn) -> dict[str, Any]:
    base = draw(inference_docs())
    doc = {k: v for k, v in base.items() if k in ("event_id", "occurred_at", "model", "study")}
    doc["schema"] = draw(maybe(st.just(LABEL_SCHEMA)))
    doc["labels"] = draw(maybe(st.dictionaries(NAMES, maybe(st.sampled_from([0, 1, True, False])),
                                               min_size=1, max_size=3)))  # fmt: skip
    doc["source"] = draw(maybe(st.sampled_from(["pathology", "Consensus ", "dr smith"])))
    study = doc.get("study")
    if isinstance(study, dict) and draw(st.integers(0, 2)) == 0:
        # A label by accession alone (the RIS's usual case), or naming neither (refused).
        del study["study_uid"]
        if draw(st.booleans()):
            study["accession"] = draw(maybe(IDS))
    if draw(st.integers(0, 2)) == 0:
        doc["labeler"] = draw(maybe(st.fixed_dictionaries(
            {"name": maybe(st.just("negex")), "version": maybe(st.just("1.0")),
             "fingerprint": maybe(SHA256)},
            optional={"x": ODD})))  # fmt: skip
    if draw(st.integers(0, 2)) == 0:
        span = st.fixed_dictionaries(
            {"start": maybe(OFFSETS), "end": maybe(OFFSETS), "sha256": maybe(SHA256)},
            optional={"text": ODD})  # fmt: skip
        doc["evidence"] = draw(maybe(st.dictionaries(NAMES, maybe(span), max_size=3)))
    return doc


def encode(draw: st.DrawFn, doc: dict[str, Any]) -> bytes:
    """JSON text of `doc`, ASCII-escaped or not; sometimes with a key repeated."""
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 9 and text.startswith("{") and len(text) > 2:
        key = draw(st.sampled_from(["event_id", "site", "latency_ms", "schema"]))
        text = text[:-1] + f', "{key}": {json.dumps(draw(ODD))}' + "}"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate kept raw (ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")


@st.composite
def records(draw: st.DrawFn) -> tuple[bytes, str]:
    label = draw(st.booleans())
    doc = draw(label_docs() if label else inference_docs())
    raw = encode(draw, doc)
    if draw(st.integers(0, 9)) == 9 and raw:  # bytes overwritten
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=3)) + raw[at + 1 :]
    return raw, LABEL_SCHEMA if label else INFERENCE_SCHEMA


def _both(raw: bytes, schema: str) -> tuple[object, object, object]:
    fast = typed_events.parse_fast(raw, schema, P, MAX_BYTES, LIMITS)
    ref = parse_reference(raw, default_schema=schema, pseudonym=P, max_bytes=MAX_BYTES,
                          limits=LIMITS)  # fmt: skip
    got = parse_record(raw, default_schema=schema, pseudonym=P, max_bytes=MAX_BYTES, limits=LIMITS)
    return fast, ref, got


@CORPUS
@given(records())
def test_fast_path_agrees_with_the_reference_path(case: tuple[bytes, str]) -> None:
    raw, schema = case
    fast, ref, got = _both(raw, schema)
    event("fast" if fast is not None else f"reference: {type(ref).__name__}")
    if fast is not None:
        assert fast == ref
    assert got == ref


@CORPUS
@given(st.data())
def test_fast_path_takes_well_formed_events(data: st.DataObject) -> None:
    """Valid records go the fast way (else the fast path would be dead code, unnoticed)."""
    doc = {
        "event_id": data.draw(st.uuids().map(str)), "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr", "version": "1"}, "site": data.draw(PLAIN),
        "study": {"study_uid": data.draw(st.from_regex(r"\A[0-9.]{1,64}\Z")),
                  "patient_id": data.draw(IDS)},
        "dicom": {"Modality": "DX", "KVP": data.draw(st.integers(1, 200)),
                  "StationName": data.draw(PLAIN)},
        "embedding": data.draw(st.lists(st.floats(-10, 10), min_size=1, max_size=16)),
        "prediction": {"scores": data.draw(st.dictionaries(PLAIN, UNIT, min_size=1, max_size=3))},
        "latency_ms": data.draw(st.floats(0, 1e4)),
    }  # fmt: skip
    raw = json.dumps(doc).encode()
    fast, ref, got = _both(raw, INFERENCE_SCHEMA)
    assert isinstance(ref, InferenceEvent)
    assert fast == ref == got


def test_fast_path_takes_a_label_and_the_dicom_cache_keeps_events_apart() -> None:
    doc = {"event_id": "e1", "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "cxr"},
           "study": {"study_uid": "1.2.3"}, "labels": {"nodule": True, "mass": 0},
           "source": "Pathology"}  # fmt: skip
    fast, ref, _ = _both(json.dumps(doc).encode(), LABEL_SCHEMA)
    assert isinstance(fast, LabelEvent) and fast == ref
    inference = {"event_id": "e2", "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "m"},
                 "study": {"study_uid": "1.2.3"}, "prediction": {"scores": {"a": 0.5}},
                 "dicom": {"PixelSpacing": [0.1, 0.1], "StationName": "CT01"}}  # fmt: skip
    first, _, _ = _both(json.dumps(inference).encode(), INFERENCE_SCHEMA)
    second, _, _ = _both(json.dumps({**inference, "event_id": "e3"}).encode(), INFERENCE_SCHEMA)
    assert isinstance(first, InferenceEvent) and isinstance(second, InferenceEvent)
    assert first.dicom == second.dicom and first.dicom is not second.dicom
    assert first.dicom["PixelSpacing"] is not second.dicom["PixelSpacing"]
    assert first.dicom["StationName"] == P("StationName", "CT01")


def test_fast_path_takes_a_label_by_accession_with_its_provenance() -> None:
    doc = {"event_id": "e4", "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "cxr"},
           "study": {"accession": "ACC1"}, "labels": {"pneumothorax": 1},
           "source": "report-labeler",
           "labeler": {"name": "negex", "version": "1", "fingerprint": "AB" * 32},
           "evidence": {"pneumothorax": {"start": 3, "end": 40, "sha256": "cd" * 32}}}  # fmt: skip
    fast, ref, got = _both(json.dumps(doc).encode(), LABEL_SCHEMA)
    assert isinstance(fast, LabelEvent) and fast == ref == got
    assert fast.study.study is None and fast.study.accession == P("accession", "ACC1")
    assert fast.labeler is not None and fast.labeler.fingerprint == "ab" * 32
    assert fast.evidence["pneumothorax"].end == 40

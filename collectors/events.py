"""Wire contract v1 (DESIGN.md §4): Kafka record bytes → a validated, pseudonymised event.

First step of the data flow. `parse_record` never raises on bad input: it returns either
an `InferenceEvent` / `LabelEvent` / `InteractionEvent` (the last from
collectors.interaction_events; identifiers already replaced by pseudonyms, DICOM tags
reduced to the allow-list, extra fields reduced to the configured allow-list) or a
`Rejection` with a reason code (collectors.errors.Reason) for the dead-letter path.

Untrusted bytes are decoded on one path only, collectors.bounded_json: orjson, then the
`ParseLimits` walk over the decoded tree, before any field is read here.
`dead_letter_skeleton` is the only view of a refused record that is stored.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from collectors import typed_events
from collectors.bounded_json import DEFAULT_LIMITS, ParseLimits, decode
from collectors.dicom_tags import normalise_tags
from collectors.errors import InvalidEvent, Reason

# Re-exported: the events and shared rules live in collectors.event_types.
from collectors.event_types import (
    INFERENCE_SCHEMA,
    INTERACTION_SCHEMA,
    LABEL_SCHEMA,
    MAX_EMBEDDING_DIM,
    MAX_EVIDENCE,
    AccessionRef,
    Event,
    EvidenceSpan,
    InferenceEvent,
    LabelerRef,
    LabelEvent,
    StudyRef,
    content_hash,
    evidence_span,
    label_source,
    labeler_ref,
    parse_timestamp,
)
from collectors.interaction_events import INTERACTION_KEYS, parse_interaction
from collectors.pseudonym import Pseudonymiser, is_identifier_key


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    message: str


_INFERENCE_KEYS = {
    "schema", "event_id", "occurred_at", "model", "site", "study", "dicom", "image",
    "embedding", "prediction", "latency_ms",
}  # fmt: skip
_LABEL_KEYS = {
    "schema", "event_id", "occurred_at", "model", "study", "labels", "source", "labeler",
    "evidence",
}  # fmt: skip
_SCHEMAS = (INFERENCE_SCHEMA, LABEL_SCHEMA, INTERACTION_SCHEMA)


def parse_record(
    raw: bytes,
    *,
    default_schema: str,
    pseudonym: Pseudonymiser,
    max_bytes: int,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> Event | Rejection:
    """Validate one Kafka record value. Never raises for bad input.

    A well-formed record takes the typed fast path (collectors.typed_events, C decoding);
    every other one the reference path below, which alone decides rejections and their
    reason codes. Both return the same event for a record both accept.
    """
    fast = typed_events.parse_fast(raw, default_schema, pseudonym, max_bytes, limits)
    if fast is not None:
        return fast
    return parse_reference(
        raw, default_schema=default_schema, pseudonym=pseudonym, max_bytes=max_bytes,
        limits=limits,
    )  # fmt: skip


def parse_reference(
    raw: bytes,
    *,
    default_schema: str,
    pseudonym: Pseudonymiser,
    max_bytes: int,
    limits: ParseLimits = DEFAULT_LIMITS,
) -> Event | Rejection:
    """The reference path: bounded decoding, then each field checked in Python."""
    try:
        return _parse(raw, default_schema, pseudonym, max_bytes, limits)
    except InvalidEvent as exc:
        return Rejection(exc.reason, exc.message)


def _parse(
    raw: bytes, default_schema: str, pseudonym: Pseudonymiser, max_bytes: int, limits: ParseLimits
) -> Event:
    if raw is None:
        raise InvalidEvent(Reason.NOT_JSON, "record has no value (tombstone)")
    if len(raw) > max_bytes:
        raise InvalidEvent(Reason.TOO_LARGE, f"value is {len(raw)} bytes, limit is {max_bytes}")
    doc = decode(raw, limits)
    if b"\\u0000" in raw:
        # PostgreSQL text and jsonb cannot hold U+0000; refuse it here with a precise reason.
        raise InvalidEvent(Reason.NUL_CHARACTER, "value contains a NUL character (\\u0000)")
    if not isinstance(doc, dict):
        raise InvalidEvent(Reason.NOT_OBJECT, f"JSON value is a {type(doc).__name__}, not object")
    schema = doc.get("schema", default_schema)
    if schema == INFERENCE_SCHEMA:
        return _inference(doc, pseudonym, content_hash(raw), limits)
    if schema == LABEL_SCHEMA:
        return _label(doc, pseudonym, content_hash(raw), limits)
    if schema == INTERACTION_SCHEMA:
        return parse_interaction(doc, pseudonym, content_hash(raw), limits)
    raise InvalidEvent(Reason.UNKNOWN_SCHEMA, f"schema is not one of {', '.join(_SCHEMAS)}")


def _require(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    if key not in doc or doc[key] is None:
        raise InvalidEvent(Reason.MISSING_FIELD, f"{path} is required")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool) and bool not in _as_tuple(kind):
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be {_type_name(kind)}")
    return value


def _optional(doc: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    if doc.get(key) is None:
        return None
    return _require(doc, key, kind, path)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        dict: "an object",
        list: "an array",
        int: "a number",
        float: "a number",
    }
    return " or ".join(sorted({names.get(k, k.__name__) for k in _as_tuple(kind)}))


def _nonempty_str(doc: Mapping[str, Any], key: str, path: str, limit: int = 256) -> str:
    value: str = _require(doc, key, str, path)
    if not value.strip() or len(value) > limit:
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be a non-empty string of ≤{limit}")
    return value


def _timestamp(doc: Mapping[str, Any], limits: ParseLimits) -> datetime:
    return parse_timestamp(_require(doc, "occurred_at", str, "occurred_at"), limits)


def _study(doc: Mapping[str, Any], pseudonym: Pseudonymiser) -> StudyRef:
    study = _require(doc, "study", dict, "study")
    study_uid = _nonempty_str(study, "study_uid", "study.study_uid")
    others = _other_ids(study, pseudonym)
    return StudyRef(pseudonym("study_uid", study_uid), **others)


def _label_study(doc: Mapping[str, Any], pseudonym: Pseudonymiser) -> StudyRef | AccessionRef:
    """A label's study: by UID, or by `accession` alone (the only identifier a RIS report
    usually carries). The accession is then the join key, so it must be a usable value; it is
    pseudonymised with the same key and kind as an inference's accession."""
    study = _require(doc, "study", dict, "study")
    if study.get("study_uid") is not None:
        return _study(doc, pseudonym)
    if study.get("accession") is None:
        raise InvalidEvent(Reason.MISSING_FIELD, "study.study_uid or study.accession is required")
    accession = _require(study, "accession", (str, int), "study.accession")
    if isinstance(accession, str) and (not accession.strip() or len(accession) > 256):
        raise InvalidEvent(Reason.WRONG_TYPE, "study.accession must be a non-empty string of ≤256")
    others = _other_ids(study, pseudonym)
    return AccessionRef(pseudonym("accession", str(accession)), others["series"],
                        others["sop"], others["patient"])  # fmt: skip


def _other_ids(study: Mapping[str, Any], pseudonym: Pseudonymiser) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for key, name in (("series_uid", "series"), ("sop_uid", "sop"), ("accession", "accession"),
                      ("patient_id", "patient")):  # fmt: skip
        value = _optional(study, key, (str, int), f"study.{key}")
        out[name] = pseudonym(key, str(value)) if value is not None else None
    return out


def _number_map(value: Mapping[str, Any], path: str, *, unit_interval: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    # Messages name the field, never the finding or the value (both come from the event).
    for name, number in value.items():
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise InvalidEvent(Reason.WRONG_TYPE, f"{path} values must be numbers")
        if not math.isfinite(number):
            raise InvalidEvent(Reason.SCORE_NOT_FINITE, f"{path} holds a non-finite number")
        if unit_interval and not 0.0 <= number <= 1.0:
            raise InvalidEvent(Reason.SCORE_OUT_OF_RANGE, f"{path} holds a value not in [0,1]")
        out[str(name)[:64]] = float(number)
    return out


def _vector(values: list[Any]) -> tuple[float, ...]:
    """A finite numeric vector; the hot path of parsing, so checked in bulk, not per item."""
    if not all(type(v) is float or type(v) is int for v in values):
        raise InvalidEvent(Reason.WRONG_TYPE, "embedding must be an array of numbers")
    vector = tuple(map(float, values))
    if not math.isfinite(math.fsum(vector)):
        # fsum is inf/nan iff some element is (or the sum overflows, equally unusable).
        raise InvalidEvent(Reason.SCORE_NOT_FINITE, "embedding holds NaN or infinite values")
    return vector


def _model(doc: Mapping[str, Any]) -> tuple[str, str | None]:
    model = _require(doc, "model", dict, "model")
    name = _nonempty_str(model, "name", "model.name", limit=128)
    version = _optional(model, "version", str, "model.version")
    return name, version


def _extra(
    doc: Mapping[str, Any], known: set[str], pseudonym: Pseudonymiser, limits: ParseLimits
) -> dict[str, Any]:
    """Unknown top-level fields: only the allow-listed ones, without identifier-looking keys.

    An allow-listed key that itself looks like an identifier (PatientName, notes, …) is
    dropped all the same; inside a kept value, identifier-looking keys are dropped with
    their values (keys can carry names too).
    """
    if not limits.extra_fields:
        return {}
    return {
        k: pseudonym.redact(v)
        for k, v in doc.items()
        if k in limits.extra_fields and k not in known and not is_identifier_key(k)
    }


def _inference(
    doc: dict[str, Any], pseudonym: Pseudonymiser, digest: str, limits: ParseLimits
) -> InferenceEvent:
    event_id = _nonempty_str(doc, "event_id", "event_id", limit=128)
    model_name, model_version = _model(doc)
    occurred_at = _timestamp(doc, limits)
    study = _study(doc, pseudonym)
    prediction = _require(doc, "prediction", dict, "prediction")
    scores_raw = _require(prediction, "scores", dict, "prediction.scores")
    if not scores_raw:
        raise InvalidEvent(Reason.MISSING_FIELD, "prediction.scores must name at least one score")
    scores = _number_map(scores_raw, "prediction.scores", unit_interval=True)
    thresholds_raw = _optional(prediction, "threshold", dict, "prediction.threshold") or {}
    thresholds = _number_map(thresholds_raw, "prediction.threshold", unit_interval=True)
    site = _optional(doc, "site", str, "site")
    dicom_raw = _optional(doc, "dicom", dict, "dicom") or {}
    image = _optional(doc, "image", dict, "image") or {}
    image_uri = _optional(image, "uri", str, "image.uri")
    embedding_raw = _optional(doc, "embedding", list, "embedding")
    embedding = None
    if embedding_raw is not None:
        if not 0 < len(embedding_raw) <= MAX_EMBEDDING_DIM:
            raise InvalidEvent(
                Reason.WRONG_TYPE, f"embedding length must be 1..{MAX_EMBEDDING_DIM}"
            )
        embedding = _vector(embedding_raw)
    latency = _optional(doc, "latency_ms", (int, float), "latency_ms")
    if latency is not None and (not math.isfinite(latency) or latency < 0):
        raise InvalidEvent(Reason.WRONG_TYPE, "latency_ms must be a finite number ≥ 0")
    return InferenceEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        model_name=model_name,
        model_version=model_version,
        site=site[:64] if site else None,
        study=study,
        dicom=normalise_tags(dicom_raw, pseudonym),
        scores=scores,
        thresholds=thresholds,
        embedding=embedding,
        latency_ms=float(latency) if latency is not None else None,
        content_hash=digest,
        image_uri=image_uri,
        image_ref=pseudonym("uri", image_uri) if image_uri else None,
        extra=_extra(doc, _INFERENCE_KEYS, pseudonym, limits),
    )


def _label(
    doc: dict[str, Any], pseudonym: Pseudonymiser, digest: str, limits: ParseLimits
) -> LabelEvent:
    event_id = _nonempty_str(doc, "event_id", "event_id", limit=128)
    model_name, _ = _model(doc)
    occurred_at = _timestamp(doc, limits)
    study = _label_study(doc, pseudonym)
    labels_raw = _require(doc, "labels", dict, "labels")
    if not labels_raw:
        raise InvalidEvent(Reason.MISSING_FIELD, "labels must name at least one finding")
    labels: dict[str, int] = {}
    for name, value in labels_raw.items():
        # A finding the model does not score is kept: labels may precede inferences.
        if value not in (0, 1) or isinstance(value, float):
            raise InvalidEvent(Reason.WRONG_TYPE, "labels values must be 0, 1, true or false")
        labels[str(name)[:64]] = int(value)
    source = label_source(_optional(doc, "source", str, "source"))
    labeler = _labeler(_optional(doc, "labeler", dict, "labeler"))
    evidence = _evidence(_optional(doc, "evidence", dict, "evidence") or {})
    return LabelEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        model_name=model_name,
        study=study,
        labels=labels,
        source=source,
        content_hash=digest,
        extra=_extra(doc, _LABEL_KEYS, pseudonym, limits),
        labeler=labeler,
        evidence=evidence,
    )


def _labeler(value: Mapping[str, Any] | None) -> LabelerRef | None:
    """The optional `labeler` object: name, version and fingerprint, all three required."""
    if value is None:
        return None
    for key in ("name", "version", "fingerprint"):
        _require(value, key, str, f"labeler.{key}")
    return labeler_ref(value["name"], value["version"], value["fingerprint"])


def _evidence(value: Mapping[str, Any]) -> dict[str, EvidenceSpan]:
    """The optional `evidence` map: finding → {start, end, sha256} of the span it came from."""
    if len(value) > MAX_EVIDENCE:
        raise InvalidEvent(Reason.WRONG_TYPE, f"evidence names more than {MAX_EVIDENCE} findings")
    out: dict[str, EvidenceSpan] = {}
    for name, span in value.items():
        # Messages name the field, never the finding (it comes from the event).
        if not isinstance(span, dict):
            raise InvalidEvent(Reason.WRONG_TYPE, "evidence values must be objects")
        for key in ("start", "end", "sha256"):
            if span.get(key) is None:
                raise InvalidEvent(Reason.MISSING_FIELD, f"evidence.{key} is required")
        out[str(name)[:64]] = evidence_span(span["start"], span["end"], span["sha256"])
    return out


def dead_letter_skeleton(raw: bytes, pseudonym: Pseudonymiser) -> dict[str, Any] | None:
    """What is stored of a refused record: the contract's known fields, reduced; or None.

    Only fields that help find and fix the producer are kept: identifiers as pseudonyms,
    `dicom` through the allow-list, numbers only where the contract has numbers, the
    names of unknown fields never (they can carry names too; only their count is kept).
    Anything outside the decoding limits is not decoded at all, so None. Never raises for
    any bytes (callers still guard it: the dead-letter write must not fail).
    """
    try:
        doc = decode(raw, DEFAULT_LIMITS)
    except InvalidEvent:
        return None
    if not isinstance(doc, dict) or b"\\u0000" in raw:  # jsonb cannot hold U+0000
        return None
    out: dict[str, Any] = {}
    schema = doc.get("schema")
    if schema in _SCHEMAS:
        out["schema"] = schema
    elif schema is not None:
        out["schema"] = "unknown"
    for key, limit in (("event_id", 128), ("site", 64)):
        value = doc.get(key)
        if isinstance(value, str) and "\x00" not in value:
            out[key] = value[:limit]
    with contextlib.suppress(InvalidEvent):
        # Kept only as the timestamp it parses to: free text here could be anything.
        out["occurred_at"] = _timestamp(doc, DEFAULT_LIMITS).isoformat()
    model = doc.get("model")
    if isinstance(model, dict):
        out["model"] = {
            k: model[k][:128]
            for k in ("name", "version")
            if isinstance(model.get(k), str) and "\x00" not in model[k]
        }
    study = doc.get("study")
    if isinstance(study, dict):
        out["study"] = {
            k: "pseudo:" + pseudonym(k, str(study[k]))
            for k in ("study_uid", "series_uid", "sop_uid", "accession", "patient_id")
            if isinstance(study.get(k), str | int) and not isinstance(study[k], bool)
        }
    if isinstance(doc.get("dicom"), dict):
        out["dicom"] = normalise_tags(doc["dicom"], pseudonym)
    image = doc.get("image")
    if isinstance(image, dict) and isinstance(image.get("uri"), str):
        out["image_ref"] = pseudonym("uri", image["uri"])
    prediction = doc.get("prediction")
    if isinstance(prediction, dict):
        out["prediction"] = {
            k: _numbers_only(prediction[k]) for k in ("scores", "threshold") if k in prediction
        }
    if "labels" in doc:
        out["labels"] = _numbers_only(doc["labels"])
    if "source" in doc:
        out["source"] = label_source(doc["source"])
    latency = doc.get("latency_ms")
    if isinstance(latency, int | float) and not isinstance(latency, bool):
        out["latency_ms"] = float(latency)
    if isinstance(doc.get("embedding"), list):
        out["embedding_length"] = len(doc["embedding"])
    known = _INFERENCE_KEYS | _LABEL_KEYS | INTERACTION_KEYS
    out["extra_fields"] = sum(1 for k in doc if k not in known)
    return out


def _numbers_only(value: Any) -> Any:
    """A {finding: number} map → its numbers in order (anything else None), without names.

    Finding names are the producer's free text; the values say why the record was refused.
    """
    if not isinstance(value, dict):
        return None
    return [
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        else None
        for v in value.values()
    ]  # fmt: skip

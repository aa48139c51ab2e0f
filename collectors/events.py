"""Wire contract v1 (DESIGN.md §4): Kafka record bytes → a validated, pseudonymised event.

First step of the data flow. `parse_record` never raises on bad input: it returns either
an `InferenceEvent` / `LabelEvent` (identifiers already replaced by pseudonyms, DICOM tags
reduced to the allow-list) or a `Rejection` with a reason code for the dead-letter path.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from collectors.dicom_tags import normalise_tags
from collectors.pseudonym import Pseudonymiser

INFERENCE_SCHEMA = "radwatch.inference.v1"
LABEL_SCHEMA = "radwatch.label.v1"
MAX_EMBEDDING_DIM = 8192


class Reason(StrEnum):
    """Machine-readable dead-letter reason codes (stable: dashboards and tests use them)."""

    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"
    UNKNOWN_SCHEMA = "unknown_schema"
    MISSING_FIELD = "missing_field"
    WRONG_TYPE = "wrong_type"
    SCORE_NOT_FINITE = "score_not_finite"
    SCORE_OUT_OF_RANGE = "score_out_of_range"
    BAD_TIMESTAMP = "bad_timestamp"
    NUL_CHARACTER = "nul_character"
    STORAGE_REJECTED = "storage_rejected"
    DUPLICATE_CONFLICT = "duplicate_conflict"
    # Image-path reasons, decided by the image resolver and DICOM reader.
    IMAGE_UNREADABLE = "image_unreadable"
    IMAGE_HTTP_ERROR = "image_http_error"
    IMAGE_TIMEOUT = "image_timeout"
    DICOM_TRUNCATED = "dicom_truncated"
    DICOM_NO_PIXELS = "dicom_no_pixels"
    DICOM_UNSUPPORTED_SYNTAX = "dicom_unsupported_syntax"
    DICOM_BAD_DIMENSIONS = "dicom_bad_dimensions"
    DICOM_INVALID = "dicom_invalid"  # not a DICOM/PNG/NPY object, or undecodable pixels
    # The fenced fetcher and the decoding limits (issue 13): each refusal its own code.
    IMAGE_FORBIDDEN = "image_forbidden"  # URI outside the roots / listed URLs, or a redirect
    DICOM_TOO_LARGE_INFLATED = "dicom_too_large_inflated"  # deflated dataset over the cap
    DICOM_TOO_MANY_PIXELS = "dicom_too_many_pixels"  # rows×columns×frames×samples over the cap
    IMAGE_DECODE_TIMEOUT = "image_decode_timeout"  # decoding ran past its time budget


class InvalidEvent(ValueError):
    """Raised inside the parser; turned into a `Rejection` at its boundary."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Rejection:
    reason: Reason
    message: str


@dataclass(frozen=True)
class StudyRef:
    """Pseudonyms of the study's identifiers; the raw values never leave the parser."""

    study: str
    series: str | None = None
    sop: str | None = None
    accession: str | None = None
    patient: str | None = None


@dataclass(frozen=True)
class InferenceEvent:
    event_id: str
    occurred_at: datetime
    model_name: str
    model_version: str | None
    site: str | None
    study: StudyRef
    dicom: Mapping[str, Any]
    scores: Mapping[str, float]
    thresholds: Mapping[str, float]
    embedding: tuple[float, ...] | None
    latency_ms: float | None
    content_hash: str
    # Held in memory for the image resolver only; it may carry identifiers and is never stored.
    image_uri: str | None = field(default=None, repr=False)
    image_ref: str | None = None  # pseudonym of image_uri, safe to store
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LabelEvent:
    event_id: str
    occurred_at: datetime
    model_name: str
    study: StudyRef
    labels: Mapping[str, int]
    source: str | None
    content_hash: str
    extra: Mapping[str, Any] = field(default_factory=dict)


Event = InferenceEvent | LabelEvent

_INFERENCE_KEYS = {
    "schema", "event_id", "occurred_at", "model", "site", "study", "dicom", "image",
    "embedding", "prediction", "latency_ms",
}  # fmt: skip
_LABEL_KEYS = {"schema", "event_id", "occurred_at", "model", "study", "labels", "source"}


def content_hash(raw: bytes) -> str:
    """SHA-256 of the record's bytes, to tell a replay from a conflicting duplicate.

    A replay after a crash or a producer retry carries the very same bytes, so hashing the
    bytes suffices and costs far less than canonical JSON on the ingest hot path. A producer
    that re-serialises the same event differently is reported as a conflict: a dead letter
    to look at, never a silent overwrite.
    """
    return hashlib.sha256(raw).hexdigest()


def parse_record(
    raw: bytes, *, default_schema: str, pseudonym: Pseudonymiser, max_bytes: int
) -> Event | Rejection:
    """Validate one Kafka record value. Never raises for bad input."""
    try:
        return _parse(raw, default_schema, pseudonym, max_bytes)
    except InvalidEvent as exc:
        return Rejection(exc.reason, exc.message)


def _parse(raw: bytes, default_schema: str, pseudonym: Pseudonymiser, max_bytes: int) -> Event:
    if raw is None:
        raise InvalidEvent(Reason.NOT_JSON, "record has no value (tombstone)")
    if len(raw) > max_bytes:
        raise InvalidEvent(Reason.TOO_LARGE, f"value is {len(raw)} bytes, limit is {max_bytes}")
    try:
        # orjson (strict RFC 8259, UTF-8 checked) is ~4x faster than json on this hot path.
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = _loads_precisely(raw)
    if b"\\u0000" in raw:
        # PostgreSQL text and jsonb cannot hold U+0000; refuse it here with a precise reason.
        raise InvalidEvent(Reason.NUL_CHARACTER, "value contains a NUL character (\\u0000)")
    if not isinstance(doc, dict):
        raise InvalidEvent(Reason.NOT_OBJECT, f"JSON value is a {type(doc).__name__}, not object")
    schema = doc.get("schema", default_schema)
    if schema == INFERENCE_SCHEMA:
        return _inference(doc, pseudonym, content_hash(raw))
    if schema == LABEL_SCHEMA:
        return _label(doc, pseudonym, content_hash(raw))
    raise InvalidEvent(Reason.UNKNOWN_SCHEMA, f"unknown schema {str(schema)[:80]!r}")


def _loads_precisely(raw: bytes) -> Any:
    """The slow path for what orjson refused: say exactly why, or accept NaN/Infinity.

    The standard library accepts NaN/Infinity literals, which are then rejected as scores
    with the more precise reason `score_not_finite`.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(Reason.NOT_UTF8, f"value is not UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(Reason.NOT_JSON, f"value is not JSON: {exc.msg} at {exc.pos}") from exc


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


def _timestamp(doc: Mapping[str, Any]) -> datetime:
    value = _require(doc, "occurred_at", str, "occurred_at")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidEvent(
            Reason.BAD_TIMESTAMP, f"occurred_at {value[:40]!r} is not ISO 8601"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _study(doc: Mapping[str, Any], pseudonym: Pseudonymiser) -> StudyRef:
    study = _require(doc, "study", dict, "study")
    study_uid = _nonempty_str(study, "study_uid", "study.study_uid")
    others = {}
    for key in ("series_uid", "sop_uid", "accession", "patient_id"):
        value = _optional(study, key, (str, int), f"study.{key}")
        others[key] = pseudonym(key, str(value)) if value is not None else None
    return StudyRef(
        study=pseudonym("study_uid", study_uid),
        series=others["series_uid"],
        sop=others["sop_uid"],
        accession=others["accession"],
        patient=others["patient_id"],
    )


def _number_map(value: Mapping[str, Any], path: str, *, unit_interval: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, number in value.items():
        if not isinstance(number, int | float) or isinstance(number, bool):
            raise InvalidEvent(Reason.WRONG_TYPE, f"{path}.{name} must be a number")
        if not math.isfinite(number):
            raise InvalidEvent(Reason.SCORE_NOT_FINITE, f"{path}.{name} is {number}")
        if unit_interval and not 0.0 <= number <= 1.0:
            raise InvalidEvent(Reason.SCORE_OUT_OF_RANGE, f"{path}.{name}={number} not in [0,1]")
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


def _extra(doc: Mapping[str, Any], known: set[str], pseudonym: Pseudonymiser) -> dict[str, Any]:
    # Unknown fields are kept (contract §4), but identifier-named keys inside them are redacted.
    return {k: pseudonym.redact(v) for k, v in doc.items() if k not in known}


def _inference(doc: dict[str, Any], pseudonym: Pseudonymiser, digest: str) -> InferenceEvent:
    event_id = _nonempty_str(doc, "event_id", "event_id", limit=128)
    model_name, model_version = _model(doc)
    occurred_at = _timestamp(doc)
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
        extra=_extra(doc, _INFERENCE_KEYS, pseudonym),
    )


def _label(doc: dict[str, Any], pseudonym: Pseudonymiser, digest: str) -> LabelEvent:
    event_id = _nonempty_str(doc, "event_id", "event_id", limit=128)
    model_name, _ = _model(doc)
    occurred_at = _timestamp(doc)
    study = _study(doc, pseudonym)
    labels_raw = _require(doc, "labels", dict, "labels")
    if not labels_raw:
        raise InvalidEvent(Reason.MISSING_FIELD, "labels must name at least one finding")
    labels: dict[str, int] = {}
    for name, value in labels_raw.items():
        # A finding the model does not score is kept: labels may precede inferences.
        if value not in (0, 1) or isinstance(value, float):
            raise InvalidEvent(Reason.WRONG_TYPE, f"labels.{name} must be 0, 1, true or false")
        labels[str(name)[:64]] = int(value)
    source = _optional(doc, "source", str, "source")
    return LabelEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        model_name=model_name,
        study=study,
        labels=labels,
        source=source[:64] if source else None,
        content_hash=digest,
        extra=_extra(doc, _LABEL_KEYS, pseudonym),
    )

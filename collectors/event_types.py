"""The events of wire contract v1 (DESIGN.md §4) and the field rules both parsing paths share.

Between the record bytes and everything downstream: collectors.events (the reference path)
and collectors.typed_events (the typed fast path) both build these frozen values, with the
same timestamp window, label-source reduction and content hash, from this one place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from collectors.bounded_json import ParseLimits
from collectors.errors import InvalidEvent, Reason

INFERENCE_SCHEMA = "radwatch.inference.v1"
LABEL_SCHEMA = "radwatch.label.v1"
INTERACTION_SCHEMA = "radwatch.interaction.v1"
MAX_EMBEDDING_DIM = 8192
# Optional provenance of a derived label (DESIGN.md §4, docs/contract/label.v1.schema.json):
# at most this many findings carry evidence, and a span's offsets are characters into a
# report, which is far shorter than this (the bound keeps the stored integers plain int4).
MAX_EVIDENCE = 64
MAX_SPAN_OFFSET = 10_000_000
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


# A label's `source` is stored and may be grouped by, so it comes from this set ("other"
# for anything else): free text there could name a person.
LABEL_SOURCES = frozenset(
    {"radiologist-report", "report-labeler", "pathology", "consensus", "follow-up", "other"}
)


@dataclass(frozen=True)
class StudyRef:
    """Pseudonyms of the study's identifiers; the raw values never leave the parser."""

    study: str
    series: str | None = None
    sop: str | None = None
    accession: str | None = None
    patient: str | None = None


@dataclass(frozen=True)
class AccessionRef:
    """A label's study named by its accession alone (the usual case for a RIS report).

    Pseudonyms, as in StudyRef; `study` is always None, and the store joins on `accession`
    (the same key and kind as an inference's accession pseudonym).
    """

    accession: str
    series: str | None = None
    sop: str | None = None
    patient: str | None = None
    study: None = None


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
class LabelerRef:
    """The labeler that derived a label from report text (collectors.labeler's identity)."""

    name: str
    version: str
    fingerprint: str  # SHA-256 of lexicon, rules and version, lower-case hex


@dataclass(frozen=True)
class EvidenceSpan:
    """Where in the report a derived label came from: character offsets and the span's hash.

    Never the text itself (DESIGN.md §5): the offsets and hash let a reviewer holding the
    report find and verify the sentence, and nobody else learn anything from it.
    """

    start: int
    end: int
    sha256: str


@dataclass(frozen=True)
class LabelEvent:
    event_id: str
    occurred_at: datetime
    model_name: str
    study: StudyRef | AccessionRef
    labels: Mapping[str, int]
    source: str | None
    content_hash: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    labeler: LabelerRef | None = None
    evidence: Mapping[str, EvidenceSpan] = field(default_factory=dict)


# What a reader did with an AI result (docs/contract/interaction.v1.schema.json). The closed
# sets follow the AI-result interaction notions of IHE Radiology AI Results (AIR) and its audit
# of result presentation and acceptance: the result was shown (viewed), its finding was taken
# into the report (accepted), replaced by the reader's own call (overridden) or set aside
# (dismissed). Stored and grouped by, so never free text; the role never names a person.
INTERACTION_ACTIONS = frozenset({"viewed", "accepted", "overridden", "dismissed"})
USER_ROLES = frozenset({"radiologist", "resident", "technologist", "other"})
MAX_TIME_TO_READ_S = 86_400.0  # a day: longer is a producer's clock error, not a read


@dataclass(frozen=True)
class InteractionEvent:
    event_id: str
    occurred_at: datetime
    model_name: str
    model_version: str | None
    study: StudyRef | AccessionRef
    action: str  # one of INTERACTION_ACTIONS
    viewed: bool | None
    time_to_read_s: float | None
    user_role: str | None  # one of USER_ROLES
    content_hash: str


Event = InferenceEvent | LabelEvent | InteractionEvent


def content_hash(raw: bytes) -> str:
    """SHA-256 of the record's bytes, to tell a replay from a conflicting duplicate.

    A replay after a crash or a producer retry carries the very same bytes, so hashing the
    bytes suffices and costs far less than canonical JSON on the ingest hot path. A producer
    that re-serialises the same event differently is reported as a conflict: a dead letter
    to look at, never a silent overwrite.
    """
    return hashlib.sha256(raw).hexdigest()


def parse_timestamp(value: str, limits: ParseLimits) -> datetime:
    """`occurred_at` text → a UTC instant inside the limits' window, or InvalidEvent."""
    if len(value) > 64:
        raise InvalidEvent(Reason.BAD_TIMESTAMP, "occurred_at is not ISO 8601")
    try:
        parsed = datetime.fromisoformat(value)
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except ValueError:
        raise InvalidEvent(Reason.BAD_TIMESTAMP, "occurred_at is not ISO 8601") from None
    except OverflowError:
        # Year 1 at +01:00 or year 9999 at -01:00: valid text, no UTC instant.
        raise InvalidEvent(
            Reason.BAD_TIMESTAMP, "occurred_at is outside the datetime range"
        ) from None
    if limits.max_past is not None or limits.max_future is not None:
        now = limits.clock()
        # A far-future event would move every "latest" cursor past real ones; a far-past
        # one is a producer bug. Both are dead letters, with the window in the message.
        if limits.max_past is not None and moment < now - limits.max_past:
            raise InvalidEvent(
                Reason.BAD_TIMESTAMP, f"occurred_at is more than {limits.max_past.days} days old"
            )
        if limits.max_future is not None and moment > now + limits.max_future:
            hours = limits.max_future.total_seconds() / 3600
            raise InvalidEvent(
                Reason.BAD_TIMESTAMP, f"occurred_at is more than {hours:g} hours in the future"
            )
    return moment


def label_source(value: object) -> str | None:
    """A label's `source`, reduced to LABEL_SOURCES ("other" for anything else)."""
    if value is None:
        return None
    text = value.strip().lower() if isinstance(value, str) else ""
    return text if text in LABEL_SOURCES else "other"


def _text(value: object, path: str, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be a string")
    if not value.strip() or len(value) > limit:
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be a non-empty string of ≤{limit}")
    return value


def sha256_hex(value: object, path: str) -> str:
    """A SHA-256 digest as 64 hex digits (either case accepted, lower-case kept)."""
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value.lower()):
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be a SHA-256 as 64 hex digits")
    return value.lower()


def labeler_ref(name: object, version: object, fingerprint: object) -> LabelerRef:
    """The `labeler` object's fields, checked (both parsing paths call this)."""
    return LabelerRef(
        name=_text(name, "labeler.name", 128),
        version=_text(version, "labeler.version", 64),
        fingerprint=sha256_hex(fingerprint, "labeler.fingerprint"),
    )


def _offset(value: object, path: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SPAN_OFFSET:
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be an integer in 0..{MAX_SPAN_OFFSET}")
    return value


def evidence_span(start: object, end: object, digest: object) -> EvidenceSpan:
    """One `evidence` entry's fields, checked (both parsing paths call this)."""
    first, last = _offset(start, "evidence.start"), _offset(end, "evidence.end")
    if last < first:
        raise InvalidEvent(Reason.WRONG_TYPE, "evidence.end must not be before evidence.start")
    return EvidenceSpan(first, last, sha256_hex(digest, "evidence.sha256"))

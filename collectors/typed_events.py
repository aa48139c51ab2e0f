"""The fast path of wire contract v1: typed decoding in C (msgspec) of a well-formed record.

First step of the data flow, inside collectors.events.parse_record: a record whose every
field already has the contract's type and range is decoded straight into typed structs
(msgspec validates types in C, with no intermediate tree to walk) and turned into the same
`InferenceEvent` / `LabelEvent` the reference path builds. Anything else returns None and
the reference path (collectors.bounded_json + collectors.events) decides, so every refused
record gets exactly the reason code and message it always got: this path only ever
*accepts*, and only what the reference path accepts too (tests/collectors/
test_typed_events.py checks the two agree on a Hypothesis corpus).

Where the two decoders differ, the fast path steps aside: unknown fields (the reference path
walks and allow-lists them), integers beyond 64 bits (orjson reads them as floats), records
large enough to pass a tree limit, any `\\u0000`. The `dicom` object is kept as raw bytes and
decoded by orjson exactly as the reference path does, once per distinct value (a scanner
sends the same tags with every study).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import orjson

from collectors import event_types as ev
from collectors.bounded_json import ParseLimits, check_tree
from collectors.dicom_tags import normalise_tags
from collectors.errors import InvalidEvent
from collectors.pseudonym import Pseudonymiser

# orjson keeps integers in [-2**63, 2**64) as int and reads any other as a float (which the
# contract then refuses where it wants an identifier); msgspec keeps them as int.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_NULL = msgspec.Raw(b"null")
# The longest key of the structs below ("series_uid", "latency_ms") and their most keys.
_STRUCT_KEY_CHARS, _STRUCT_KEYS, _STRUCT_DEPTH = 16, 11, 3
# Distinct `dicom` values remembered per parser; a site has a few scanners, not thousands.
DICOM_CACHE_SIZE = 1024


class _Model(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    version: str | None = None


class _Study(msgspec.Struct, forbid_unknown_fields=True):
    study_uid: str | None = None  # required of inferences; a label may name an accession only
    series_uid: str | int | None = None
    sop_uid: str | int | None = None
    accession: str | int | None = None
    patient_id: str | int | None = None


class _Image(msgspec.Struct, forbid_unknown_fields=True):
    uri: str | None = None


class _Prediction(msgspec.Struct, forbid_unknown_fields=True):
    scores: dict[str, float]
    threshold: dict[str, float] | None = None


class _Inference(msgspec.Struct, forbid_unknown_fields=True):
    event_id: str
    occurred_at: str
    model: _Model
    study: _Study
    prediction: _Prediction
    schema: str | msgspec.UnsetType = msgspec.UNSET
    site: str | None = None
    dicom: msgspec.Raw = _NULL
    image: _Image | None = None
    embedding: list[float] | None = None
    latency_ms: float | None = None


class _Labeler(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    version: str
    fingerprint: str


class _Span(msgspec.Struct, forbid_unknown_fields=True):
    start: int
    end: int
    sha256: str


class _Label(msgspec.Struct, forbid_unknown_fields=True):
    event_id: str
    occurred_at: str
    model: _Model
    study: _Study
    labels: dict[str, bool | int]
    schema: str | msgspec.UnsetType = msgspec.UNSET
    source: str | None = None
    labeler: _Labeler | None = None
    evidence: dict[str, _Span] | None = None


_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    ev.INFERENCE_SCHEMA: msgspec.json.Decoder(_Inference),
    ev.LABEL_SCHEMA: msgspec.json.Decoder(_Label),
}


class _Unsure(Exception):
    """The fast path steps aside: the reference path decides (never leaves this module)."""


class TypedParser:
    """The fast path for one pseudonymiser and one set of limits (see parse_fast)."""

    def __init__(self, pseudonym: Pseudonymiser, limits: ParseLimits) -> None:
        self.pseudonym = pseudonym
        self.limits = limits
        self._dicom: dict[bytes, dict[str, Any]] = {}
        # Limits the fixed structs could break by themselves: then always the reference path.
        self.usable = (
            limits.max_depth >= _STRUCT_DEPTH
            and limits.max_key_chars >= _STRUCT_KEY_CHARS
            and limits.max_object_keys >= _STRUCT_KEYS
            and limits.max_string_chars >= 256
        )

    def parse(self, raw: bytes, default_schema: str, max_bytes: int) -> ev.Event | None:
        """The event the reference path would return, or None when that path must decide."""
        if (
            not self.usable
            or type(raw) is not bytes
            or len(raw) > max_bytes
            # Each value counted by `max_values` takes two bytes or more (value, separator):
            # a shorter record cannot exceed it.
            or len(raw) >= 2 * self.limits.max_values
            or not raw.startswith(b"{")
            or b"\\u0000" in raw
        ):
            return None
        try:
            doc = _DECODERS[default_schema].decode(raw)
            if doc.schema is not msgspec.UNSET and doc.schema != default_schema:
                return None
            if type(doc) is _Inference:
                return self._inference(doc, ev.content_hash(raw))
            return self._label(doc, ev.content_hash(raw))
        except (
            KeyError,
            ValueError,
            InvalidEvent,
            msgspec.DecodeError,
            msgspec.ValidationError,
            _Unsure,
        ):
            return None

    # -- the two event kinds -----------------------------------------------------------------

    def _inference(self, doc: _Inference, digest: str) -> ev.InferenceEvent:
        pseudonym, limit = self.pseudonym, self.limits.max_string_chars
        model_name, model_version = self._model(doc.model)
        site = doc.site
        _bounded(doc.event_id, 128, limit)
        if site is not None and len(site) > limit:
            raise _Unsure
        embedding = None
        if doc.embedding is not None:
            if not 0 < len(doc.embedding) <= ev.MAX_EMBEDDING_DIM:
                raise _Unsure
            embedding = tuple(doc.embedding)
            if not math.isfinite(math.fsum(embedding)):
                raise _Unsure
        latency = doc.latency_ms
        if latency is not None and (not math.isfinite(latency) or latency < 0):
            raise _Unsure
        image_uri = doc.image.uri if doc.image is not None else None
        prediction = doc.prediction
        if not prediction.scores:
            raise _Unsure
        return ev.InferenceEvent(
            event_id=doc.event_id,
            occurred_at=ev.parse_timestamp(doc.occurred_at, self.limits),
            model_name=model_name,
            model_version=model_version,
            site=site[:64] if site else None,
            study=self._study(doc.study),
            dicom=self._dicom_tags(doc.dicom),
            scores=self._unit_map(prediction.scores),
            thresholds=self._unit_map(prediction.threshold or {}),
            embedding=embedding,
            latency_ms=latency,
            content_hash=digest,
            image_uri=image_uri,
            image_ref=pseudonym("uri", image_uri) if image_uri else None,
            extra={},  # no unknown field reached here (forbid_unknown_fields)
        )

    def _label(self, doc: _Label, digest: str) -> ev.LabelEvent:
        model_name, _ = self._model(doc.model)
        _bounded(doc.event_id, 128, self.limits.max_string_chars)
        raw_labels = doc.labels
        if not raw_labels:
            raise _Unsure
        self._keys_ok(raw_labels)
        labels: dict[str, int] = {}
        for name, value in raw_labels.items():
            if value not in (0, 1):
                raise _Unsure
            labels[name[:64]] = int(value)
        if doc.source is not None and len(doc.source) > self.limits.max_string_chars:
            raise _Unsure
        study = doc.study
        if study.study_uid is None:
            # Named by accession alone: then it must be a usable join key (events._label_study).
            accession = study.accession
            if (
                accession is None
                or isinstance(accession, str)
                and (not accession.strip() or len(accession) > 256)
            ):
                raise _Unsure
        labeler = None
        if doc.labeler is not None:
            lab = doc.labeler
            labeler = ev.labeler_ref(lab.name, lab.version, lab.fingerprint)
        evidence: dict[str, ev.EvidenceSpan] = {}
        if doc.evidence:
            self._keys_ok(doc.evidence)
            if len(doc.evidence) > ev.MAX_EVIDENCE:
                raise _Unsure
            for name, span in doc.evidence.items():
                evidence[name[:64]] = ev.evidence_span(span.start, span.end, span.sha256)
        return ev.LabelEvent(
            event_id=doc.event_id,
            occurred_at=ev.parse_timestamp(doc.occurred_at, self.limits),
            model_name=model_name,
            study=self._label_study(doc.study),
            labels=labels,
            source=ev.label_source(doc.source),
            content_hash=digest,
            extra={},
            labeler=labeler,
            evidence=evidence,
        )

    # -- fields ------------------------------------------------------------------------------

    def _model(self, model: _Model) -> tuple[str, str | None]:
        _bounded(model.name, 128, self.limits.max_string_chars)
        if model.version is not None and len(model.version) > self.limits.max_string_chars:
            raise _Unsure
        return model.name, model.version

    def _study(self, study: _Study) -> ev.StudyRef:
        uid = study.study_uid
        if uid is None:
            raise _Unsure  # the reference path names the missing field
        _bounded(uid, 256, self.limits.max_string_chars)
        series, sop, accession, patient = self._other_ids(study)
        return ev.StudyRef(self.pseudonym("study_uid", uid), series, sop, accession, patient)

    def _label_study(self, study: _Study) -> ev.StudyRef | ev.AccessionRef:
        if study.study_uid is not None:
            return self._study(study)
        series, sop, accession, patient = self._other_ids(study)
        if accession is None:
            raise _Unsure
        return ev.AccessionRef(accession, series, sop, patient)

    def _other_ids(self, study: _Study) -> list[str | None]:
        pseudonym = self.pseudonym
        others: list[str | None] = []
        for value, kind in ((study.series_uid, "series_uid"), (study.sop_uid, "sop_uid"),
                            (study.accession, "accession"), (study.patient_id, "patient_id")):  # fmt: skip
            if value is None:
                others.append(None)
                continue
            if isinstance(value, int):
                if not _INT_MIN <= value <= _INT_MAX:
                    raise _Unsure
            elif len(value) > self.limits.max_string_chars:
                raise _Unsure
            others.append(pseudonym(kind, str(value)))
        return others

    def _keys_ok(self, mapping: dict[str, Any]) -> None:
        limits = self.limits
        if len(mapping) > limits.max_object_keys or (
            mapping and max(map(len, mapping)) > limits.max_key_chars
        ):
            raise _Unsure

    def _unit_map(self, values: dict[str, float]) -> dict[str, float]:
        # [0, 1] holds only finite numbers, so one comparison covers both of the contract's checks.
        self._keys_ok(values)
        if not all(0.0 <= v <= 1.0 for v in values.values()):
            raise _Unsure
        return {name[:64]: v for name, v in values.items()}

    def _dicom_tags(self, raw: msgspec.Raw) -> dict[str, Any]:
        key = bytes(raw)
        tags = self._dicom.get(key)
        if tags is None:
            # Decoded and bounded exactly as the reference path does (orjson, check_tree at
            # the depth `dicom` sits in the record), then normalised.
            value = orjson.loads(key)
            if value is None:
                return {}
            if type(value) is not dict:
                raise _Unsure
            check_tree({"dicom": value}, self.limits)
            tags = normalise_tags(value, self.pseudonym)
            if len(self._dicom) >= DICOM_CACHE_SIZE:
                self._dicom.clear()
            self._dicom[key] = tags
        # A copy per event: one event's tags are never another's object.
        return {k: list(v) if type(v) is list else v for k, v in tags.items()}


def _bounded(text: str, limit: int, max_chars: int) -> None:
    """The contract's non-empty, length-limited strings (events._nonempty_str)."""
    if len(text) > limit or len(text) > max_chars or not text.strip():
        raise _Unsure


_PARSERS: dict[tuple[int, int], TypedParser] = {}


def parse_fast(
    raw: bytes, default_schema: str, pseudonym: Pseudonymiser, max_bytes: int, limits: ParseLimits
) -> ev.Event | None:
    """The event for a well-formed record, or None: then the reference path decides."""
    parser = _PARSERS.get((id(pseudonym), id(limits)))
    if parser is None or parser.pseudonym is not pseudonym or parser.limits is not limits:
        if len(_PARSERS) >= 64:
            _PARSERS.clear()
        # The parser holds both objects, so their ids cannot be reused while it is kept.
        parser = _PARSERS[(id(pseudonym), id(limits))] = TypedParser(pseudonym, limits)
    return parser.parse(raw, default_schema, max_bytes)

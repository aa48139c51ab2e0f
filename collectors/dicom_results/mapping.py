"""A DICOM SR measurement report (TID 1500) → the model, its scores or calls, and its images.

First step of the DICOM result path: `radwatch dicom-listen` (monitor/ingest/dicom_listener.py)
hands each received SR dataset here and publishes what comes back as a contract-v1 inference
event (collectors.dicom_results.event). Pure: no network, no files. highdicom reads the report
into its templates; the few rows it does not expose (TID 4019, the device observer) are read
from the content tree the same way, by their coded concept names.

Anything that cannot be mapped raises `SrMappingError` with a `Reason` code, whatever the
dataset holds; messages name the rule, never a value from the SR (it may carry identifiers).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset

from collectors.errors import CollectorError, Reason

# PS3.4 Annex A.35 SR Storage SOP classes that can hold a TID 1500 report.
SR_SOP_CLASSES: dict[
    str, type[hd.sr.EnhancedSR | hd.sr.ComprehensiveSR | hd.sr.Comprehensive3DSR]
] = {
    "1.2.840.10008.5.1.4.1.1.88.22": hd.sr.EnhancedSR,
    "1.2.840.10008.5.1.4.1.1.88.33": hd.sr.ComprehensiveSR,
    "1.2.840.10008.5.1.4.1.1.88.34": hd.sr.Comprehensive3DSR,
}
# Coded concept names, "SCHEME:VALUE" (PS3.16).
IMAGING_MEASUREMENT_REPORT = "DCM:126000"  # TID 1500 root
FINDING = "DCM:121071"  # TID 1501/1410/1411 "Finding" (and QualitativeEvaluation "Finding")
ALGORITHM_NAME = "DCM:111001"  # TID 4019 Algorithm Identification
ALGORITHM_VERSION = "DCM:111003"
DEVICE_OBSERVER_NAME = "DCM:121013"  # TID 1004 Device Observer Identifying Attributes
MEASUREMENT_GROUP = "DCM:125007"
# A group's coded qualitative evaluation of presence (TID 1501's "Qualitative Evaluations"):
# a call without a probability is positive unless the group says the finding is absent.
# Present: SCT 52101004, DCM 121053; Absent: SCT 272519000 and 2667000 (both in use), DCM 121054
# (PS3.16 Annex D). The row's concept name varies between vendors ("Presence", or the finding
# itself), so the value decides.
PRESENT = frozenset({"SCT:52101004", "DCM:121053"})
ABSENT = frozenset({"SCT:272519000", "SCT:2667000", "DCM:121054"})

# UCUM units read as a probability: unitless "1", the annotation "{probability}", and "%" (÷100).
PROBABILITY_UNITS = {"1": 1.0, "{probability}": 1.0, "%": 0.01}
# Bounds on the walk of an untrusted content tree (nesting, items visited).
MAX_DEPTH = 16
MAX_ITEMS = 20_000
MAX_NAME = 128
_SNAKE = re.compile(r"[^a-z0-9]+")


class SrMappingError(CollectorError, ValueError):
    """The SR cannot be turned into an inference event; `reason` is the dead-letter code."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class ModelOverrides:
    """Per-model configuration, keyed by the model name the SR yields (TOML `[models."NAME"]`).

    Concepts are "SCHEME:VALUE" (e.g. "SCT:27925004"); unset fields keep the defaults.
    """

    name: str | None = None  # publish under this model name instead
    version: str | None = None
    findings: Mapping[str, str] = field(default_factory=dict)  # finding concept → score name
    finding_concepts: tuple[str, ...] = ()  # further row names whose coded value is the finding
    score_concepts: tuple[str, ...] = ()  # when set, only these measurements are the score
    score_units: Mapping[str, float] = field(default_factory=dict)  # further UCUM unit → factor
    thresholds: Mapping[str, float] = field(default_factory=dict)  # score name → threshold
    call_threshold: float = 0.5  # the threshold recorded for a call (a score of 1.0)

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> ModelOverrides:
        """From a TOML table; raises ValueError naming the first bad key."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}")
        values: dict[str, Any] = dict(doc)
        for key in ("finding_concepts", "score_concepts"):
            if key in values:
                values[key] = tuple(str(v) for v in values[key])
        for key in ("findings",):
            if key in values:
                values[key] = {str(k): str(v) for k, v in dict(values[key]).items()}
        for key in ("score_units", "thresholds"):
            if key in values:
                values[key] = {str(k): float(v) for k, v in dict(values[key]).items()}
        return cls(**values)


@dataclass(frozen=True)
class ImageRef:
    """One source image the result was computed on (raw UIDs: the collector pseudonymises)."""

    sop_uid: str
    study_uid: str | None = None  # None: the SR's own study
    series_uid: str | None = None


@dataclass(frozen=True)
class SrResult:
    """One model's result in one SR: what becomes one inference event."""

    model_name: str
    model_version: str | None
    scores: Mapping[str, float]
    thresholds: Mapping[str, float]
    calls: tuple[str, ...]  # score names that are calls (no probability in the SR)
    sources: tuple[ImageRef, ...]
    study_uid: str
    sr_sop_uid: str
    accession: str | None
    patient_id: str | None
    occurred_at: datetime | None  # the SR's ContentDate/Time, None when absent or unparseable


@dataclass(frozen=True)
class _Group:
    model: tuple[str, str | None] | None
    finding: str  # the concept, "SCHEME:VALUE"
    meaning: str  # its Code Meaning
    score: float | None
    sources: tuple[ImageRef, ...]
    absent: bool = False  # a qualitative evaluation says the finding is absent


def map_sr(
    ds: Dataset, overrides: Mapping[str, ModelOverrides] | None = None
) -> tuple[SrResult, ...]:
    """Every model's result in the SR, in the order its groups name them; raises SrMappingError."""
    try:
        return _map(ds, overrides or {})
    except SrMappingError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed dataset is a reason, never a crash
        # The class only: a message could quote the dataset.
        raise SrMappingError(Reason.SR_INVALID, f"unreadable SR ({type(exc).__name__})") from exc


def _map(ds: Dataset, overrides: Mapping[str, ModelOverrides]) -> tuple[SrResult, ...]:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in SR_SOP_CLASSES:
        raise SrMappingError(Reason.SR_INVALID, "not an Enhanced/Comprehensive/3D SR SOP class")
    if _concept(ds) != IMAGING_MEASUREMENT_REPORT:
        raise SrMappingError(
            Reason.SR_INVALID, "document title is not a TID 1500 measurement report"
        )
    study_uid, sr_sop = _text(ds.get("StudyInstanceUID")), _text(ds.get("SOPInstanceUID"))
    if not study_uid or not sr_sop:
        raise SrMappingError(Reason.SR_INVALID, "StudyInstanceUID or SOPInstanceUID is missing")
    report = SR_SOP_CLASSES[sop_class].from_dataset(ds, copy=True).content
    if not isinstance(report, hd.sr.MeasurementReport):
        raise SrMappingError(Reason.SR_INVALID, "content is not a TID 1500 measurement report")
    containers = [
        g[0]
        for g in (*report.get_image_measurement_groups(), *report.get_planar_roi_measurement_groups(),
                  *report.get_volumetric_roi_measurement_groups())
    ]  # fmt: skip
    fallback = _observer_model(ds)
    groups = [g for g in (_group(c, overrides, fallback) for c in containers) if g is not None]
    if not groups:
        raise SrMappingError(Reason.SR_NO_FINDINGS, "no measurement group names a finding")
    evidence = _evidence(ds)
    by_model: dict[tuple[str, str | None], list[_Group]] = {}
    for group in groups:
        model = group.model or fallback
        if model is None:
            raise SrMappingError(
                Reason.SR_NO_MODEL, "no algorithm identification, device observer or manufacturer"
            )
        by_model.setdefault(model, []).append(group)
    when = _content_time(ds)
    results = []
    for (name, version), members in by_model.items():
        config = overrides.get(name, ModelOverrides())
        scores: dict[str, float] = {}
        calls: list[str] = []
        for group in members:
            finding = config.findings.get(group.finding) or _finding_name(group.meaning)
            # A call: positive (1.0), or negative (0.0) where the group says "absent".
            value = (0.0 if group.absent else 1.0) if group.score is None else group.score
            if group.score is None and finding not in calls:
                calls.append(finding)
            # Two groups for one finding (two nodules): the study's most suspicious one.
            scores[finding] = max(value, scores.get(finding, 0.0))
        thresholds = {
            f: config.thresholds.get(f, config.call_threshold) for f in scores
            if f in config.thresholds or f in calls
        }  # fmt: skip
        sources = _sources(members, evidence)
        if not sources:
            raise SrMappingError(Reason.SR_NO_SOURCE_IMAGES, "the SR references no source image")
        results.append(SrResult(
            model_name=(config.name or name)[:MAX_NAME],
            model_version=config.version or version,
            scores=scores, thresholds=thresholds, calls=tuple(calls), sources=sources,
            study_uid=study_uid, sr_sop_uid=sr_sop,
            accession=_text(ds.get("AccessionNumber")) or None,
            patient_id=_text(ds.get("PatientID")) or None,
            occurred_at=when,
        ))  # fmt: skip
    return tuple(results)


def _group(
    container: Dataset,
    overrides: Mapping[str, ModelOverrides],
    fallback: tuple[str, str | None] | None,
) -> _Group | None:
    """One measurement group (TID 1501/1410/1411) → its finding, score, algorithm and images."""
    model = _algorithm(container)
    named = model or fallback
    config = overrides.get(named[0], ModelOverrides()) if named else ModelOverrides()
    finding_rows = {FINDING, *config.finding_concepts}
    finding, meaning, score, presence = None, "", None, None
    units = {**PROBABILITY_UNITS, **config.score_units}
    for item in container.get("ContentSequence", []):
        name, kind = _concept(item), str(item.get("ValueType", ""))
        if kind == "CODE" and name in finding_rows and finding is None:
            code = item.ConceptCodeSequence[0]
            finding, meaning = _coded(code), _text(code.get("CodeMeaning"))
        elif kind == "CODE" and presence is None and item.get("ConceptCodeSequence"):
            value = _coded(item.ConceptCodeSequence[0])
            presence = False if value in ABSENT else True if value in PRESENT else None
        elif kind == "NUM" and score is None:
            if config.score_concepts and name not in config.score_concepts:
                continue
            score = _probability(item, units)
    if finding is None:
        return None
    sources = tuple(ImageRef(sop_uid=uid) for uid in _dedupe(_image_refs(container)))
    return _Group(model, finding, meaning, score, sources, absent=presence is False)


def _probability(item: Dataset, units: Mapping[str, float]) -> float | None:
    """A NUM row (TID 300) in a probability unit → a score in [0, 1]; None for other units."""
    measured = item.get("MeasuredValueSequence")
    if not measured:
        return None
    value = measured[0]
    unit = value.MeasurementUnitsCodeSequence[0]
    if str(unit.get("CodingSchemeDesignator", "")) != "UCUM":
        return None
    factor = units.get(str(unit.get("CodeValue", "")))
    if factor is None:
        return None
    score = float(value.NumericValue) * factor
    if not math.isfinite(score):
        raise SrMappingError(Reason.SCORE_NOT_FINITE, "a probability measurement is not finite")
    if not 0.0 <= score <= 1.0:
        raise SrMappingError(Reason.SCORE_OUT_OF_RANGE, "a probability measurement is not in [0,1]")
    return score


def _algorithm(container: Dataset) -> tuple[str, str | None] | None:
    """TID 4019 Algorithm Name and Version, anywhere in the group."""
    name = version = None
    for item in _walk(container):
        concept = _concept(item)
        if concept == ALGORITHM_NAME and name is None:
            name = _text(item.get("TextValue")) or None
        elif concept == ALGORITHM_VERSION and version is None:
            version = _text(item.get("TextValue")) or None
    return (name[:MAX_NAME], version[:MAX_NAME] if version else None) if name else None


def _observer_model(ds: Dataset) -> tuple[str, str | None] | None:
    """The device observer's name (TID 1004), else Manufacturer + ManufacturerModelName."""
    for item in ds.get("ContentSequence", []):
        # The document's observation context: rows before the Imaging Measurements container.
        if _concept(item) == DEVICE_OBSERVER_NAME:
            name = _text(item.get("TextValue"))
            if name:
                return name[:MAX_NAME], _text(ds.get("SoftwareVersions")) or None
    maker = " ".join(
        part for part in (_text(ds.get("Manufacturer")), _text(ds.get("ManufacturerModelName")))
        if part
    )  # fmt: skip
    return (maker[:MAX_NAME], _text(ds.get("SoftwareVersions")) or None) if maker else None


def _evidence(ds: Dataset) -> tuple[ImageRef, ...]:
    """PS3.3 C.17.2 Current Requested Procedure Evidence Sequence → the images it lists."""
    refs = []
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        study_uid = _text(study.get("StudyInstanceUID")) or None
        for series in study.get("ReferencedSeriesSequence", []):
            series_uid = _text(series.get("SeriesInstanceUID")) or None
            for sop in series.get("ReferencedSOPSequence", []):
                uid = _text(sop.get("ReferencedSOPInstanceUID"))
                if uid:
                    refs.append(ImageRef(uid, study_uid, series_uid))
    return tuple(refs[:MAX_ITEMS])


def _sources(groups: list[_Group], evidence: tuple[ImageRef, ...]) -> tuple[ImageRef, ...]:
    """The groups' own source images (with study and series from the evidence), else the evidence."""
    known = {ref.sop_uid: ref for ref in evidence}
    named = _dedupe(ref.sop_uid for g in groups for ref in g.sources)
    if named:
        return tuple(known.get(uid, ImageRef(uid)) for uid in named)
    return evidence


def _image_refs(container: Dataset) -> Iterator[str]:
    """SOP Instance UIDs of IMAGE rows (and those under SCOORD rows) anywhere in the group."""
    for item in _walk(container):
        if str(item.get("ValueType", "")) == "IMAGE":
            for ref in item.get("ReferencedSOPSequence", []):
                uid = _text(ref.get("ReferencedSOPInstanceUID"))
                if uid:
                    yield uid


def _walk(root: Dataset) -> Iterator[Dataset]:
    """Content items under `root`, depth-first, bounded in depth and in count."""
    stack = [(item, 1) for item in reversed(list(root.get("ContentSequence", [])))]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > MAX_ITEMS:
            raise SrMappingError(Reason.SR_INVALID, f"content tree has more than {MAX_ITEMS} items")
        yield item
        if depth < MAX_DEPTH:
            stack.extend(
                (child, depth + 1) for child in reversed(list(item.get("ContentSequence", [])))
            )


def _concept(item: Dataset) -> str | None:
    names = item.get("ConceptNameCodeSequence")
    return _coded(names[0]) if names else None


def _coded(code: Dataset) -> str:
    """A coded concept (PS3.3 Table 8.8-1) as "SCHEME:VALUE"."""
    return f"{_text(code.get('CodingSchemeDesignator'))}:{_text(code.get('CodeValue'))}"


def _finding_name(meaning: str) -> str:
    """A concept's meaning in lower snake_case (SCT 27925004 "Nodule" → nodule)."""
    name = _SNAKE.sub("_", meaning.lower()).strip("_")[:64]
    if not name:
        raise SrMappingError(Reason.SR_NO_FINDINGS, "a finding concept has no meaning to name it")
    return name


def _content_time(ds: Dataset) -> datetime | None:
    """ContentDate + ContentTime (PS3.5 DA/TM), at TimezoneOffsetFromUTC when given, else UTC."""
    date, time = _text(ds.get("ContentDate")), _text(ds.get("ContentTime"))
    if len(date) != 8 or not date.isdigit():
        return None
    digits = time.split(".")[0]
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        digits = "000000"
    try:
        when = datetime.strptime(date + digits.ljust(6, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return None
    offset = _text(ds.get("TimezoneOffsetFromUTC"))
    zone: timezone = UTC
    if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
        minutes = int(offset[1:3]) * 60 + int(offset[3:])
        zone = timezone(timedelta(minutes=minutes if offset[0] == "+" else -minutes))
    return when.replace(tzinfo=zone).astimezone(UTC)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _dedupe(values: Iterator[str] | Any) -> list[str]:
    return list(dict.fromkeys(values))

"""FHIR R4 DiagnosticReport (with its contained or bundled Observations) → `ReportMessage`s.

The FHIR path into the same labelling as HL7 v2 (`radwatch labels import --fhir FILE`, one
resource per NDJSON line: monitor/ingest/fhir_import.py). A line is a DiagnosticReport or a
Bundle holding some; each report gives a `ReportMessage` or a `ReportError` with a reason,
and a line that is not one of those is a `ReportError` itself. Any bytes give one or the
other, never another exception (tests fuzz it). JSON is decoded by collectors.bounded_json,
the record path's bounded decoder, with limits sized for a report.

What is read (FHIR R4 DiagnosticReport, hl7.org/fhir/R4/diagnosticreport.html):
- the accession: `identifier` whose type is v2-0203 `ACSN`, else the `basedOn` reference's
  `identifier` (ACSN first, then any; the order a RIS places is what it numbered);
- the text: `presentedForm` of contentType text/plain (base64 `data`), else `conclusion`
  followed by the `valueString` of the Observations in `result` (contained `#id` or bundled);
- the status: final → final; amended / corrected / appended → corrected; preliminary /
  partial → preliminary; anything else is unusable;
- `issued` (reported at), `effectiveDateTime` / `effectivePeriod.start` (observed at), `id`.
`subject`, `performer`, `resultsInterpreter` and the like are never read or kept.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collectors.bounded_json import ParseLimits, decode
from collectors.errors import InvalidEvent
from collectors.reports_in.errors import ReportError, ReportReason
from collectors.reports_in.message import ReportMessage, ResultStatus

ACSN_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"


@dataclass(frozen=True)
class FhirLimits:
    max_line_bytes: int = 4_194_304
    max_reports: int = 1_000  # per Bundle
    max_text_chars: int = 200_000
    max_accession_chars: int = 128
    # The JSON tree: a base64 presentedForm may be long; nothing in a report is deep.
    json: ParseLimits = ParseLimits(max_depth=24, max_string_chars=4_000_000,
                                    max_object_keys=512, max_values=200_000)  # fmt: skip


DEFAULT_FHIR_LIMITS = FhirLimits()

_STATUS = {
    "final": ResultStatus.FINAL,
    "amended": ResultStatus.CORRECTED,
    "corrected": ResultStatus.CORRECTED,
    "appended": ResultStatus.CORRECTED,
    "preliminary": ResultStatus.PRELIMINARY,
    "partial": ResultStatus.PRELIMINARY,
}


def parse_fhir(
    raw: bytes, limits: FhirLimits = DEFAULT_FHIR_LIMITS
) -> tuple[ReportMessage | ReportError, ...]:
    """One NDJSON line → a result per DiagnosticReport in it; ReportError for the line."""
    try:
        return _parse(raw, limits)
    except ReportError:
        raise
    except Exception as exc:  # noqa: BLE001 - a shape the walk did not expect: refused, typed
        raise ReportError(ReportReason.WRONG_TYPE,
                          f"unexpected resource shape ({type(exc).__name__})") from exc  # fmt: skip


def _parse(raw: bytes, limits: FhirLimits) -> tuple[ReportMessage | ReportError, ...]:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ReportError(ReportReason.NOT_JSON, "not bytes")
    if len(raw) > limits.max_line_bytes:
        raise ReportError(ReportReason.TOO_LARGE, f"line over {limits.max_line_bytes} bytes")
    try:
        doc = decode(bytes(raw), limits.json)
    except InvalidEvent as exc:
        reason = ReportReason.NOT_JSON
        if exc.reason in ("too_deep", "string_too_long", "too_many_keys"):
            reason = ReportReason.TOO_LARGE
        raise ReportError(reason, f"{exc.reason}: {exc.message}") from None
    if not isinstance(doc, dict):
        raise ReportError(ReportReason.NOT_JSON, "the line is not a JSON object")
    kind = doc.get("resourceType")
    if kind == "DiagnosticReport":
        return (_one(doc, _contained(doc), limits),)
    if kind != "Bundle":
        raise ReportError(
            ReportReason.NOT_A_REPORT, "resourceType is not DiagnosticReport or Bundle"
        )
    entries = doc.get("entry")
    entries = [] if entries is None else entries
    if not isinstance(entries, list):
        raise ReportError(ReportReason.WRONG_TYPE, "Bundle.entry is not an array")
    resources: list[tuple[str, dict[str, Any]]] = []
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            url = entry.get("fullUrl")
            resources.append((url if isinstance(url, str) else "", entry["resource"]))
    observations: dict[str, dict[str, Any]] = {}
    for url, res in resources:
        if res.get("resourceType") == "Observation":
            if url:
                observations[url] = res
            if isinstance(res.get("id"), str):
                observations["Observation/" + res["id"]] = res
    reports = [res for _, res in resources if res.get("resourceType") == "DiagnosticReport"]
    if not reports:
        raise ReportError(ReportReason.NOT_A_REPORT, "the Bundle holds no DiagnosticReport")
    if len(reports) > limits.max_reports:
        raise ReportError(ReportReason.TOO_LARGE, f"over {limits.max_reports} reports in a Bundle")
    return tuple(_one(res, {**observations, **_contained(res)}, limits) for res in reports)


def _contained(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for res in _list(report.get("contained")):
        if (isinstance(res, dict) and res.get("resourceType") == "Observation"
                and isinstance(res.get("id"), str)):  # fmt: skip
            out["#" + res["id"]] = res
    return out


def _one(report: Mapping[str, Any], observations: Mapping[str, Mapping[str, Any]],
         limits: FhirLimits) -> ReportMessage | ReportError:  # fmt: skip
    try:
        code = report.get("status")
        status = _STATUS.get(code) if isinstance(code, str) else None
        if status is None:
            raise ReportError(ReportReason.UNUSABLE_STATUS,
                              "status is not final, amended, corrected, appended, "
                              "preliminary or partial")  # fmt: skip
        accession = _accession(report)
        if not accession:
            raise ReportError(ReportReason.NO_ACCESSION,
                              "no identifier of type ACSN and no basedOn identifier")  # fmt: skip
        if len(accession) > limits.max_accession_chars:
            raise ReportError(ReportReason.WRONG_TYPE, "the accession is implausibly long")
        text = _text(report, observations, limits)
        if not text:
            raise ReportError(ReportReason.NO_REPORT_TEXT,
                              "no text/plain presentedForm, conclusion or Observation text")  # fmt: skip
        if len(text) > limits.max_text_chars:
            raise ReportError(ReportReason.TOO_LARGE,
                              f"report text over {limits.max_text_chars} characters")  # fmt: skip
        effective = report.get("effectiveDateTime")
        period = report.get("effectivePeriod")
        if effective is None and isinstance(period, dict):
            effective = period.get("start")
        rid = report.get("id")
        return ReportMessage(
            accession=accession,
            status=status,
            text=text,
            reported_at=parse_datetime(report.get("issued")),
            observed_at=parse_datetime(effective),
            control_id="".join(c for c in rid if c.isprintable())[:64]
            if isinstance(rid, str)
            else "",
            standard="fhir-r4",
        )
    except ReportError as exc:
        return exc


def _is_acsn(identifier: Mapping[str, Any]) -> bool:
    kind = identifier.get("type")
    if not isinstance(kind, dict):
        return False
    return any(isinstance(c, dict) and c.get("code") == "ACSN"
               and c.get("system", ACSN_SYSTEM) == ACSN_SYSTEM
               for c in _list(kind.get("coding")))  # fmt: skip


def _value(identifier: Any) -> str:
    value = identifier.get("value") if isinstance(identifier, dict) else None
    return value.strip() if isinstance(value, str) else ""


def _accession(report: Mapping[str, Any]) -> str:
    for identifier in _list(report.get("identifier")):
        if isinstance(identifier, dict) and _is_acsn(identifier) and _value(identifier):
            return _value(identifier)
    based: list[dict[str, Any]] = [ref["identifier"] for ref in _list(report.get("basedOn"))
             if isinstance(ref, dict) and isinstance(ref.get("identifier"), dict)]  # fmt: skip
    for identifier in based:
        if _is_acsn(identifier) and _value(identifier):
            return _value(identifier)
    for identifier in based:
        if _value(identifier):
            return _value(identifier)
    return ""


def _text(report: Mapping[str, Any], observations: Mapping[str, Mapping[str, Any]],
          limits: FhirLimits) -> str:  # fmt: skip
    for form in _list(report.get("presentedForm")):
        if not isinstance(form, dict) or not isinstance(form.get("data"), str):
            continue
        content_type = form.get("contentType")
        if not isinstance(content_type, str) or not content_type.lower().startswith("text/plain"):
            continue
        try:
            data = base64.b64decode(form["data"], validate=True)
            # FHIR Attachment: text in the charset the contentType names; UTF-8 otherwise.
            charset = "latin-1" if "8859-1" in content_type.lower() else "utf-8"
            text = data.decode(charset)
        except (binascii.Error, ValueError) as exc:
            raise ReportError(ReportReason.WRONG_TYPE,
                              "presentedForm data is not base64 text") from exc  # fmt: skip
        if text.strip():
            return text.replace("\x00", "").strip()
    parts = []
    conclusion = report.get("conclusion")
    if isinstance(conclusion, str) and conclusion.strip():
        parts.append(conclusion.strip())
    for ref in _list(report.get("result")):
        target = ref.get("reference") if isinstance(ref, dict) else None
        obs = observations.get(target) if isinstance(target, str) else None
        value = obs.get("valueString") if obs else None
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
        if sum(map(len, parts)) > limits.max_text_chars:
            break
    return "\n".join(parts).replace("\x00", "")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def parse_datetime(value: Any) -> datetime | None:
    """FHIR instant / dateTime (YYYY, YYYY-MM, YYYY-MM-DD or with a time) → aware, or None."""
    if not isinstance(value, str) or not 4 <= len(value) <= 40:
        return None
    text = value.strip()
    if len(text) == 4:
        text += "-01-01"
    elif len(text) == 7:
        text += "-01"
    try:
        parsed = datetime.fromisoformat(text)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None

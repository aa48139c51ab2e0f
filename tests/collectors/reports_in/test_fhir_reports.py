"""FHIR R4 DiagnosticReport NDJSON lines → ReportMessage (collectors.reports_in.fhir_report)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from report_messages import MARKERS, MRN, TEXT_MARKER, diagnostic_report

from collectors.reports_in import (
    FhirLimits,
    ReportError,
    ReportMessage,
    ReportReason,
    ResultStatus,
    parse_fhir,
)


def one(doc: object) -> ReportMessage:
    (result,) = parse_fhir(json.dumps(doc).encode())
    assert isinstance(result, ReportMessage), result
    return result


def test_presented_form_accession_status_and_times() -> None:
    report = one(diagnostic_report())
    assert report.accession == "ACC-2001" and report.status is ResultStatus.FINAL
    assert report.text == f"IMPRESSION: {TEXT_MARKER} small left pleural effusion."
    assert report.reported_at == datetime(2026, 11, 1, 9, 15, tzinfo=UTC)
    assert report.observed_at == datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert report.control_id == "dr-1" and report.standard == "fhir-r4"
    # The MRN identifier and the subject are never taken for the accession or kept.
    kept = " ".join(map(str, vars(report).values()))
    assert MRN not in kept and "Zyxwvut" not in kept


def test_accession_from_based_on_and_text_from_conclusion() -> None:
    report = one(diagnostic_report(None, based_on=True, conclusion="No pneumothorax."))
    assert report.accession == "ACC-2001" and report.text == "No pneumothorax."


def test_contained_and_bundled_observations_add_their_text() -> None:
    doc = diagnostic_report(None, conclusion="Impression: normal.")
    doc["contained"] = [{"resourceType": "Observation", "id": "o1", "valueString": "Heart normal."}]
    doc["result"] = [{"reference": "#o1"}, {"reference": "Observation/o2"}]
    assert one(doc).text == "Impression: normal.\nHeart normal."
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": doc},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation", "id": "o2",
                                               "valueString": "Lungs clear."}},
        {"resource": diagnostic_report(rid="dr-2", accession="ACC-2002", status="preliminary")},
        {"resource": diagnostic_report(rid="dr-3", accession=None)},
    ]}  # fmt: skip
    first, second, third = parse_fhir(json.dumps(bundle).encode())
    assert isinstance(first, ReportMessage) and first.text.endswith("Heart normal.\nLungs clear.")
    assert isinstance(second, ReportMessage) and second.status is ResultStatus.PRELIMINARY
    assert isinstance(third, ReportError) and third.reason is ReportReason.NO_ACCESSION


@pytest.mark.parametrize(("status", "expected"), [
    ("final", ResultStatus.FINAL), ("amended", ResultStatus.CORRECTED),
    ("corrected", ResultStatus.CORRECTED), ("appended", ResultStatus.CORRECTED),
    ("preliminary", ResultStatus.PRELIMINARY), ("partial", ResultStatus.PRELIMINARY)])  # fmt: skip
def test_status_mapping(status: str, expected: ResultStatus) -> None:
    assert one(diagnostic_report(status=status)).status is expected


@pytest.mark.parametrize(("line", "reason"), [
    (b"not json", ReportReason.NOT_JSON),
    (b"[1, 2]", ReportReason.NOT_JSON),
    (b'{"resourceType": "Patient", "name": [{"family": "Zyxwvut"}]}', ReportReason.NOT_A_REPORT),
    (b'{"resourceType": "Bundle", "entry": []}', ReportReason.NOT_A_REPORT),
    (b'{"resourceType": "Bundle", "entry": {}}', ReportReason.WRONG_TYPE),
    (b"[" * 100 + b"]" * 100, ReportReason.TOO_LARGE),
])  # fmt: skip
def test_lines_refused_with_their_reason(line: bytes, reason: ReportReason) -> None:
    with pytest.raises(ReportError) as info:
        parse_fhir(line)
    assert info.value.reason is reason
    assert all(marker not in str(info.value) for marker in MARKERS)


@pytest.mark.parametrize(("doc", "reason"), [
    (diagnostic_report(status="cancelled"), ReportReason.UNUSABLE_STATUS),
    (diagnostic_report(status=["final"]), ReportReason.UNUSABLE_STATUS),  # type: ignore[arg-type]
    (diagnostic_report(accession=None), ReportReason.NO_ACCESSION),
    (diagnostic_report(None), ReportReason.NO_REPORT_TEXT),
    ({**diagnostic_report(None), "presentedForm": [{"contentType": "text/plain", "data": "%%"}]},
     ReportReason.WRONG_TYPE),
])  # fmt: skip
def test_reports_refused_with_their_reason(doc: dict, reason: ReportReason) -> None:
    (result,) = parse_fhir(json.dumps(doc).encode())
    assert isinstance(result, ReportError) and result.reason is reason


def test_limits_bound_line_size_and_text() -> None:
    line = json.dumps(diagnostic_report("x" * 5000)).encode()
    with pytest.raises(ReportError) as info:
        parse_fhir(line, FhirLimits(max_line_bytes=1000))
    assert info.value.reason is ReportReason.TOO_LARGE
    (result,) = parse_fhir(line, FhirLimits(max_text_chars=1000))
    assert isinstance(result, ReportError) and result.reason is ReportReason.TOO_LARGE


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["resourceType", "status", "identifier", "basedOn", "presentedForm", "conclusion",
         "result", "contained", "entry", "resource", "type", "coding", "code", "value",
         "data", "contentType", "reference", "valueString", "issued", "id", "fullUrl"]),
        inner, max_size=6),
    max_leaves=30,
)  # fmt: skip
_shaped = st.fixed_dictionaries(
    {"resourceType": st.sampled_from(["DiagnosticReport", "Bundle", "Observation"])},
    optional={"status": st.sampled_from(["final", "corrected", "preliminary", "x"]) | _json_values,
              "identifier": _json_values, "basedOn": _json_values, "presentedForm": _json_values,
              "conclusion": _json_values, "result": _json_values, "contained": _json_values,
              "entry": _json_values, "issued": _json_values, "effectiveDateTime": _json_values},
)  # fmt: skip


@given(st.one_of(st.binary(max_size=300), _shaped.map(lambda d: json.dumps(d).encode()),
                 _json_values.map(lambda d: json.dumps(d).encode())))  # fmt: skip
@settings(max_examples=400, deadline=None)
def test_any_bytes_give_reports_or_typed_errors(line: bytes) -> None:
    try:
        results = parse_fhir(line)
    except ReportError as exc:
        assert isinstance(exc.reason, ReportReason)
        return
    for result in results:
        assert isinstance(result, ReportMessage | ReportError)
        if isinstance(result, ReportMessage):
            assert result.accession and result.text

"""Synthetic radiology report messages for the report-edge tests (no real patient, no real text).

HL7 v2 ORU^R01 and FHIR R4 DiagnosticReport builders with planted PHI markers in the places a
real message carries identifiers (PID name, MRN, birth date; FHIR subject): the tests check
that none of them, nor the report text's own marker, reaches a log, a Kafka record or storage.
"""

from __future__ import annotations

import base64
import json
from typing import Any

PATIENT_NAME = "Zyxwvut^Qmarker"
MRN = "MRN-PHI-778899"
BIRTH_DATE = "19231105"
# A word planted in every report text: report text is PHI too.
TEXT_MARKER = "Quetzalmarker"
MARKERS = ("Zyxwvut", "Qmarker", MRN, BIRTH_DATE, TEXT_MARKER)


def oru(
    text: str | list[str] = f"FINDINGS: {TEXT_MARKER} 5 mm nodule in the right upper lobe.",
    *,
    accession: str = "ACC-1001",
    status: str = "F",
    control_id: str = "MSG0001",
    accession_field: int = 3,
    value_type: str = "TX",
    message_type: str = "ORU^R01",
    extra_obr: str | None = None,
) -> bytes:
    """One ORU^R01 (HL7 v2.5 §7.3.1): MSH, PID (with the markers), OBR, OBX per text line."""
    lines = [text] if isinstance(text, str) else text
    obr = ["OBR", "1", "PLACER-9", "", "71045^XR CHEST 2 VIEWS^CPT"] + [""] * 21
    obr[accession_field] = accession
    if accession_field != 3:
        obr[3] = "FILLER-NOT-ACCESSION"
    obr[7] = "20261101083000"
    obr[22] = "20261101101500+0100"
    obr[25] = status
    segments = [
        f"MSH|^~\\&|RIS|NORTH|RADWATCH|NORTH|20261101101600||{message_type}|{control_id}|P|2.5",
        f"PID|1||{MRN}^^^NORTH^MR||{PATIENT_NAME}||{BIRTH_DATE}|F|||1 Main St^^Town",
        "PV1|1|O",
        "|".join(obr),
    ]
    for i, line in enumerate(lines, 1):
        segments.append(
            f"OBX|{i}|{value_type}|18782-3^Radiology Study observation^LN||{line}||||||{status}"
        )
    if extra_obr is not None:
        segments.append(extra_obr)
    return ("\r".join(segments) + "\r").encode()


def diagnostic_report(
    text: str | None = f"IMPRESSION: {TEXT_MARKER} small left pleural effusion.",
    *,
    accession: str | None = "ACC-2001",
    status: str = "final",
    conclusion: str | None = None,
    based_on: bool = False,
    rid: str = "dr-1",
) -> dict[str, Any]:
    """A FHIR R4 DiagnosticReport with the accession as an ACSN identifier (or basedOn)."""
    acsn = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                 "code": "ACSN"}]}, "value": accession}  # fmt: skip
    doc: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5"}]},
        "subject": {"reference": "Patient/p1", "display": PATIENT_NAME.replace("^", " ")},
        "identifier": [{"system": "urn:mrn", "value": MRN}],
        "issued": "2026-11-01T10:15:00+01:00",
        "effectiveDateTime": "2026-11-01T08:30:00Z",
    }
    if accession is not None:
        if based_on:
            doc["basedOn"] = [{"reference": "ServiceRequest/sr1", "identifier": acsn}]
        else:
            doc["identifier"].append(acsn)
    if text is not None:
        data = base64.b64encode(text.encode()).decode()
        doc["presentedForm"] = [{"contentType": "text/plain; charset=utf-8", "data": data}]
    if conclusion is not None:
        doc["conclusion"] = conclusion
    return doc


def ndjson(*docs: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)

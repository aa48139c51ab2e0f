"""Radiology reports in: HL7 v2 ORU^R01 over MLLP and FHIR R4 DiagnosticReport → `ReportMessage`.

The input edge for radiologists' reads (DESIGN.md §5b). Pure: parsing, MLLP framing and ACK
building only; the listener and the importer (monitor/ingest) do the I/O, label the text and
publish label events by accession.
"""

from collectors.reports_in.ack import AckCode, ack_code_for, build_ack, error_code_for
from collectors.reports_in.errors import ReportError, ReportReason
from collectors.reports_in.fhir_report import DEFAULT_FHIR_LIMITS, FhirLimits, parse_fhir
from collectors.reports_in.hl7_oru import (
    DEFAULT_ACCESSION_FIELD,
    DEFAULT_HL7_LIMITS,
    Hl7Header,
    Hl7Limits,
    accession_location,
    parse_oru,
    read_header,
)
from collectors.reports_in.message import ReportMessage, ResultStatus
from collectors.reports_in.mllp import DEFAULT_MAX_FRAME_BYTES, Frame, MllpDecoder, frame

__all__ = [
    "DEFAULT_ACCESSION_FIELD", "DEFAULT_FHIR_LIMITS", "DEFAULT_HL7_LIMITS",
    "DEFAULT_MAX_FRAME_BYTES", "AckCode", "FhirLimits", "Frame", "Hl7Header", "Hl7Limits",
    "MllpDecoder", "ReportError", "ReportMessage", "ReportReason", "ResultStatus",
    "accession_location", "ack_code_for", "build_ack", "error_code_for", "frame",
    "parse_fhir", "parse_oru", "read_header",
]  # fmt: skip

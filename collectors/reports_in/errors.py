"""Why a radiology report message (HL7 v2 ORU^R01, FHIR R4 DiagnosticReport) was refused.

Sits below the report parsers of collectors.reports_in: each refusal is a `ReportError` with a
stable `ReportReason` (the dead-letter code the listener and the FHIR import record) and a
one-line message of fixed text. A message never quotes the report, the accession or any PID
field (DESIGN.md §5): it names the segment, field or JSON key at fault, nothing more.
"""

from __future__ import annotations

from enum import StrEnum

from collectors.errors import CollectorError


class ReportReason(StrEnum):
    """Machine-readable reasons (stable: the dead letters and the ACK's ERR segment carry them)."""

    TOO_LARGE = "too_large"  # over the message / frame / line size cap
    NOT_HL7 = "not_hl7"  # no MSH segment with its encoding characters first
    BAD_ENCODING = "bad_encoding"  # bytes not text in the declared or default character set
    BAD_FRAMING = "bad_framing"  # MLLP: bytes outside <VT> ... <FS><CR>
    UNSUPPORTED_MESSAGE = "unsupported_message"  # not ORU^R01 (MSH-9)
    TOO_MANY_SEGMENTS = "too_many_segments"
    NO_ORDER = "no_order"  # no OBR segment
    NO_ACCESSION = "no_accession"  # the configured accession field is empty
    NO_REPORT_TEXT = "no_report_text"  # no OBX TX/FT/ST value, presentedForm or conclusion
    UNUSABLE_STATUS = "unusable_status"  # a result status that is neither final, corrected
    # nor preliminary (HL7 table 0123 O/I/S/X/Y/Z; FHIR registered, cancelled, ...)
    NOT_JSON = "not_json"  # FHIR: not a JSON object within the decoding limits
    NOT_A_REPORT = "not_a_report"  # FHIR: neither a DiagnosticReport nor a Bundle holding one
    WRONG_TYPE = "wrong_type"  # FHIR: a field of the wrong JSON type
    MALFORMED = "malformed"  # the HL7 library refused the structure


class ReportError(CollectorError, ValueError):
    """A report message the edge refuses; `reason` is its dead-letter code."""

    def __init__(self, reason: ReportReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def __reduce__(self):  # noqa: ANN204 - pickle's protocol
        return (type(self), (self.reason, self.message))

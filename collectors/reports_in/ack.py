"""HL7 v2 acknowledgements (original mode, HL7 v2.5 §2.9.2): MSH, MSA and, on error, ERR.

Where the listener's answer to each received message is built (monitor/ingest/
report_listener.py sends it back over MLLP). `AA` (application accept) is sent only once the
derived label event is durable; `AE` (application error) when the message's content cannot
be used (no accession, no report text, an unusable status); `AR` (application reject) when
the message itself is refused (not HL7, not ORU^R01, too large) or the receiver cannot
process anything now (broker down: §2.9.2 "for reasons unrelated to its content", the
sender may resend later). The ERR segment (v2.5 §2.15.5) names the HL7 error code (table
0357), severity and a fixed one-line user message: never a value from the message.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from collectors.reports_in.errors import ReportReason
from collectors.reports_in.hl7_oru import Hl7Header


class AckCode(StrEnum):
    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


# HL7 table 0357 (message error condition codes).
SEGMENT_SEQUENCE_ERROR = 100
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
APPLICATION_INTERNAL_ERROR = 207

_ERROR_TEXT = {
    SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    APPLICATION_INTERNAL_ERROR: "Application internal error",
}
_REASON_CODE = {
    ReportReason.NO_ORDER: SEGMENT_SEQUENCE_ERROR,
    ReportReason.NO_ACCESSION: REQUIRED_FIELD_MISSING,
    ReportReason.NO_REPORT_TEXT: REQUIRED_FIELD_MISSING,
    ReportReason.UNUSABLE_STATUS: TABLE_VALUE_NOT_FOUND,
    ReportReason.UNSUPPORTED_MESSAGE: UNSUPPORTED_MESSAGE_TYPE,
}
# Refusals of the message as a whole (AR); every other reason is about its content (AE).
_REJECTS = frozenset({ReportReason.NOT_HL7, ReportReason.BAD_FRAMING, ReportReason.BAD_ENCODING,
                      ReportReason.UNSUPPORTED_MESSAGE, ReportReason.TOO_LARGE,
                      ReportReason.TOO_MANY_SEGMENTS, ReportReason.MALFORMED})  # fmt: skip


def ack_code_for(reason: ReportReason) -> AckCode:
    return AckCode.REJECT if reason in _REJECTS else AckCode.ERROR


def error_code_for(reason: ReportReason) -> int:
    return _REASON_CODE.get(reason, DATA_TYPE_ERROR)


def build_ack(
    header: Hl7Header | None,
    code: AckCode,
    *,
    error_code: int | None = None,
    user_message: str = "",
    error_location: tuple[str, ...] = (),
    now: datetime | None = None,
) -> bytes:
    """The ACK message (segments joined by <CR>, §2.5.1), ready for MLLP framing.

    `error_location`: ERR-2 as (segment id, sequence, field), e.g. ("OBR", "1", "3").
    `header` is the received MSH (None when there was none: the ACK then uses the standard
    separators and an empty MSA-2). Sender and receiver swap places (MSH-3..6).
    """
    h = header or Hl7Header()
    sep = h.field_sep
    enc = h.encoding_chars
    component = enc[0] if enc else "^"

    def clean(value: str) -> str:
        # A value echoed from the sender's MSH keeps its components; control bytes go.
        return "".join(ch for ch in value if ch not in "\r\n\x0b\x1c" and ch != sep)

    def text(value: str) -> str:
        # Our own fixed words: no separator of any kind may split them.
        return "".join(" " if ch in sep + enc + "\r\n\x0b\x1c" else ch for ch in value)[:200]

    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S+0000")
    control = "A" + uuid.uuid4().hex[:19]
    msh = sep.join(["MSH", enc, clean(h.receiving_application), clean(h.receiving_facility),
                    clean(h.sending_application), clean(h.sending_facility), stamp, "",
                    component.join(["ACK", "R01", "ACK"]), control, clean(h.processing_id),
                    clean(h.version)])  # fmt: skip
    segments = [msh, sep.join(["MSA", str(code), clean(h.control_id)])]
    if code is not AckCode.ACCEPT:
        err_code = error_code or APPLICATION_INTERNAL_ERROR
        err3 = component.join([str(err_code), _ERROR_TEXT.get(err_code, ""), "HL70357"])
        # ERR-1 (deprecated) empty, ERR-2 location, ERR-3 code, ERR-4 severity E, ERR-8 text.
        segments.append(sep.join(["ERR", "", component.join(text(p) for p in error_location),
                                  err3, "E", "", "", "", text(user_message)]))  # fmt: skip
    return "\r".join(segments).encode("utf-8") + b"\r"

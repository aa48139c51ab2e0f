"""HL7 v2 ORU^R01 (observation result, HL7 v2.5 chapter 7) bytes → `ReportMessage`s.

The first step of `radwatch hl7-listen` after MLLP framing (collectors.reports_in.mllp): a
radiology report from the RIS, through the interface engine, becomes one `ReportMessage`
per order (OBR) with its accession, result status and report text, or a `ReportError` with a
reason. Any bytes give one or the other, never another exception (tests fuzz it).

python-hl7 splits the structure (segments, fields, repetitions, components; HL7 v2.5 §2.5);
everything read from it is then checked here. Its own unescape is not used: it logs the
whole field on a bad escape sequence, and the field is report text (DESIGN.md §5). Escape
sequences are decoded by `unescape` below (§2.7).

Only MSH (routing, §2.14.9), OBR (order, §4.5.3 / §7.4.1) and OBX (result, §7.4.2) are read.
PID, PD1, PV1, NK1, ORC, NTE and every other segment are never looked at, let alone kept:
the one identifier kept is the accession, raw, for the caller to pseudonymise at its edge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hl7

from collectors.reports_in.errors import ReportError, ReportReason
from collectors.reports_in.message import ReportMessage, ResultStatus


@dataclass(frozen=True)
class Hl7Limits:
    max_bytes: int = 1_048_576  # one report; a whole day of a RIS is never one message
    max_segments: int = 2_000
    max_text_chars: int = 200_000
    max_accession_chars: int = 128
    # Separators bound python-hl7's work (it builds a list per field, repetition, component
    # and subcomponent): 900 kB of "^&~" took it 10 s; a real report has a few thousand.
    max_separators: int = 20_000


DEFAULT_HL7_LIMITS = Hl7Limits()

# Where the accession number sits. OBR-3 (filler order number, EI) by default: in radiology
# the RIS, as filler, numbers the order, and IHE SWF's "accession number" is that number;
# some sites put it in OBR-2 (placer order number) or OBR-18 (placer field 1).
DEFAULT_ACCESSION_FIELD = "OBR-3"
_FIELD_SPEC = re.compile(r"^OBR-([1-9][0-9]?)(?:\.([1-9][0-9]?))?$")

# Text-valued OBX (OBX-2 value type, HL7 table 0125): TX text data, FT formatted text, ST string.
TEXT_VALUE_TYPES = frozenset({"TX", "FT", "ST"})
# OBR-25 / OBX-11 (HL7 table 0123 / 0085) → what the labeler does with it. A ("some results
# available") and R ("stored, not verified") are not a signed report: treated as preliminary.
_STATUS = {
    "F": ResultStatus.FINAL,
    "C": ResultStatus.CORRECTED,
    "P": ResultStatus.PRELIMINARY,
    "A": ResultStatus.PRELIMINARY,
    "R": ResultStatus.PRELIMINARY,
}


@dataclass(frozen=True)
class Hl7Header:
    """MSH fields an ACK needs (HL7 v2.5 §2.9.2): routing and the control id, no person."""

    field_sep: str = "|"
    encoding_chars: str = "^~\\&"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    control_id: str = ""
    processing_id: str = "P"
    version: str = "2.5"


def accession_location(spec: str) -> tuple[int, int]:
    """ "OBR-3" / "OBR-18.1" → (field, component); ValueError for anything else."""
    match = _FIELD_SPEC.match(spec.strip().upper())
    if not match:
        raise ValueError(f"accession field must look like OBR-3 or OBR-18.1, not {spec!r}")
    return int(match.group(1)), int(match.group(2) or 1)


def read_header(data: bytes) -> Hl7Header | None:
    """The MSH routing fields of whatever arrived, for the ACK; None when there is no MSH.

    Read by hand, not by the library, so that even a message the parser refuses is answered
    with the sender's control id. Never raises.
    """
    try:
        first = data[:4096].split(b"\r", 1)[0].split(b"\n", 1)[0].decode("latin-1")
        if len(first) < 8 or not first.startswith("MSH"):
            return None
        sep = first[3]
        fields = first.split(sep)
        if len(fields) < 2 or sep.isalnum() or sep.isspace():
            return None

        def msh(n: int) -> str:  # MSH-1 is the separator itself: MSH-n is fields[n - 1]
            value = fields[n - 1] if 2 <= n <= len(fields) else ""
            return _printable(value)[:180]

        return Hl7Header(sep, msh(2)[:4] or "^~\\&", msh(3), msh(4), msh(5), msh(6),
                         msh(10), msh(11) or "P", msh(12) or "2.5")  # fmt: skip
    except Exception:  # noqa: BLE001 - the header is best effort, the ACK must still go out
        return None


def parse_oru(
    data: bytes,
    *,
    accession_field: str = DEFAULT_ACCESSION_FIELD,
    limits: Hl7Limits = DEFAULT_HL7_LIMITS,
) -> tuple[ReportMessage, ...]:
    """One `ReportMessage` per OBR of an ORU^R01, or `ReportError` with its reason."""
    field_no, component_no = accession_location(accession_field)
    text = _decode(data, limits)
    try:
        message = hl7.parse(text)
    except Exception as exc:  # noqa: BLE001 - the library's refusals, whatever their class
        raise ReportError(ReportReason.MALFORMED, "the HL7 structure could not be split") from exc
    try:
        return _read(message, field_no, component_no, limits)
    except ReportError:
        raise
    except Exception as exc:  # noqa: BLE001 - a structure the walk below did not expect
        raise ReportError(ReportReason.MALFORMED,
                          f"unexpected HL7 structure ({type(exc).__name__})") from exc  # fmt: skip


def _decode(data: bytes, limits: Hl7Limits) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ReportError(ReportReason.NOT_HL7, "not bytes")
    data = bytes(data)
    if len(data) > limits.max_bytes:
        raise ReportError(ReportReason.TOO_LARGE, f"message over {limits.max_bytes} bytes")
    if not data.startswith(b"MSH") or len(data) < 8:
        raise ReportError(ReportReason.NOT_HL7, "the message does not start with an MSH segment")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # MSH-18 character set: ISO IR 100 (8859/1) is the one single-byte set still common.
        if b"8859/1" not in data.split(b"\r", 1)[0] and b"IR 100" not in data.split(b"\r", 1)[0]:
            raise ReportError(ReportReason.BAD_ENCODING,
                              "not UTF-8 and MSH-18 declares no 8859/1") from None  # fmt: skip
        text = data.decode("latin-1")
    if "\x00" in text:
        raise ReportError(ReportReason.BAD_ENCODING, "NUL character in the message")
    # Segments end with <CR> (§2.5.1); interface engines often send <LF> or <CR><LF>.
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    sep, encoding = text[3], text[4:8].split(text[3], 1)[0]
    if (sep.isalnum() or sep.isspace() or len(encoding) < 2
            or len(set(sep + encoding)) != len(sep + encoding)
            or any(c.isalnum() or c.isspace() for c in encoding)):  # fmt: skip
        raise ReportError(ReportReason.NOT_HL7, "MSH-1/MSH-2 encoding characters are invalid")
    if text.count("\r") + 1 > limits.max_segments:
        raise ReportError(ReportReason.TOO_MANY_SEGMENTS, f"over {limits.max_segments} segments")
    if sum(text.count(c) for c in sep + encoding) > limits.max_separators:
        raise ReportError(ReportReason.TOO_LARGE, f"over {limits.max_separators} separators")
    return text


def _read(message: Any, field_no: int, component_no: int,
          limits: Hl7Limits) -> tuple[ReportMessage, ...]:  # fmt: skip
    msh = message[0]
    escape = str(msh[2])[2:3] if len(str(msh[2])) > 2 else "\\"
    kind = _component(msh, 9, 1).upper(), _component(msh, 9, 2).upper()
    if kind != ("ORU", "R01"):
        raise ReportError(ReportReason.UNSUPPORTED_MESSAGE, "MSH-9 is not ORU^R01")
    control_id = _printable(_component(msh, 10, 1))[:64]
    sent_at = parse_dtm(_component(msh, 7, 1))
    # Each OBR opens an order group; its OBX follow it (ORU^R01 structure, §7.3.1).
    groups: list[tuple[Any, list[Any]]] = []
    for segment in message:
        name = str(segment[0])[:3] if len(segment) else ""
        if name == "OBR":
            groups.append((segment, []))
        elif name == "OBX" and groups:
            groups[-1][1].append(segment)
    if not groups:
        raise ReportError(ReportReason.NO_ORDER, "no OBR segment")
    texts = [_report_text(obx, escape, limits) for _, obx in groups]
    whole = "\n".join(t for t in texts if t)
    if not whole.strip():
        raise ReportError(ReportReason.NO_REPORT_TEXT, "no OBX of value type TX, FT or ST")
    out = []
    for (obr, obx), own in zip(groups, texts, strict=True):
        accession = unescape(_component(obr, field_no, component_no), escape).strip()
        if not accession:
            raise ReportError(ReportReason.NO_ACCESSION,
                              f"OBR-{field_no}.{component_no} (the accession) is empty")  # fmt: skip
        if len(accession) > limits.max_accession_chars:
            raise ReportError(ReportReason.MALFORMED, "the accession is implausibly long")
        out.append(ReportMessage(
            accession=accession,
            status=_status(obr, obx),
            # An order without its own text shares the message's report (one dictation for
            # several orders, e.g. CT chest and abdomen read together).
            text=own or whole,
            reported_at=parse_dtm(_component(obr, 22, 1)) or sent_at,
            observed_at=parse_dtm(_component(obr, 7, 1)),
            control_id=control_id,
            standard="hl7v2",
        ))  # fmt: skip
    return tuple(out)


def _status(obr: Any, obx: list[Any]) -> ResultStatus:
    code = _component(obr, 25, 1).strip().upper()
    if not code:
        # OBR-25 is required in ORU^R01, but some senders fill only OBX-11 (table 0085).
        codes = {_component(o, 11, 1).strip().upper() for o in obx} - {""}
        code = codes.pop() if len(codes) == 1 else ""
    status = _STATUS.get(code)
    if status is None:
        raise ReportError(ReportReason.UNUSABLE_STATUS,
                          "result status (OBR-25) is not F, C, P, A or R")  # fmt: skip
    return status


def _report_text(segments: list[Any], escape: str, limits: Hl7Limits) -> str:
    lines: list[str] = []
    size = 0
    for obx in segments:
        if _component(obx, 2, 1).strip().upper() not in TEXT_VALUE_TYPES:
            continue
        if len(obx) <= 5:
            continue
        # OBX-5 repetitions are lines of TX; FT marks its own breaks with \.br\ (§2.7.6).
        for repetition in _repetitions(obx[5]):
            line = unescape(repetition, escape)
            size += len(line) + 1
            if size > limits.max_text_chars:
                raise ReportError(ReportReason.TOO_LARGE,
                                  f"report text over {limits.max_text_chars} characters")  # fmt: skip
            lines.append(line)
    return "\n".join(lines).strip()


def _repetitions(field: Any) -> list[str]:
    # python-hl7 gives a Field (no repetition), or a Field of Repetitions; str() re-joins
    # components with their separator, which is what free text means by a stray '^'.
    if isinstance(field, hl7.Field) and field and isinstance(field[0], hl7.Repetition):
        return [str(rep) for rep in field]
    return [str(field)]


def _component(segment: Any, field_no: int, component_no: int) -> str:
    """Segment field `field_no`, first repetition, component `component_no`, as text ("")."""
    if len(segment) <= field_no:
        return ""
    value = segment[field_no]
    if isinstance(value, list) and value and isinstance(value[0], hl7.Repetition):
        value = value[0]  # the first repetition
    if isinstance(value, list) and value and isinstance(value[0], hl7.Component):
        return str(value[component_no - 1]) if len(value) >= component_no else ""
    return str(value) if component_no == 1 else ""


_FORMATTING = {".br": "\n", ".sp": "\n", "F": "|", "S": "^", "T": "&", "R": "~"}


def unescape(value: str, escape: str = "\\") -> str:
    """HL7 v2.5 §2.7 escape sequences: separators back, \\.br\\ as a line break, the rest out.

    Highlighting (\\H\\, \\N\\), formatting commands other than line breaks, character-set
    switches and hex data carry no words the labeler needs: they are dropped, never guessed.
    Assumes the standard separators for \\F\\ \\S\\ \\T\\ \\R\\ (what they mean, not what
    the sender used). An unterminated escape drops the rest of the value.
    """
    if not escape or escape not in value:
        return value
    out: list[str] = []
    parts = value.split(escape)
    # Even indexes are text, odd ones escape sequences (the text between two escape chars).
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(part)
        elif i < len(parts) - 1:
            if part == "E":
                out.append(escape)
            else:
                out.append(_FORMATTING.get(part, ""))
    return "".join(out)


_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,4})?([+-]\d{4})?$")


def parse_dtm(value: str) -> datetime | None:
    """HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S...]]]]]][+/-ZZZZ], §2.A.22) → aware datetime, or None.

    Without an offset the time is read as UTC (the sender's local zone is not known here).
    """
    match = _DTM.match(value.strip()) if value and len(value) <= 40 else None
    if not match:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    try:
        tz: timezone = UTC
        if offset:
            sign = -1 if offset[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        return datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                        int(minute or 0), int(second or 0), tzinfo=tz).astimezone(UTC)  # fmt: skip
    except (ValueError, OverflowError):
        return None


def _printable(value: str) -> str:
    return "".join(ch for ch in value if ch.isprintable())

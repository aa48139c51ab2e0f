"""NDJSON report files → NDJSON label files: the labeler applied line by line.

Between a site's exported reports and `radwatch labels derive` (monitor/commands/
labels_cmd.py), which opens the files and prints the summary. Each input line is
{"id": ..., "text": ...}; each output line {"id": ..., "labels": {finding: 1|0|-1},
"labeler": {"name", "version", "fingerprint"}}, plus "evidence" (offsets and SHA-256 of the
sentence) when asked. A bad line is reported by number and reason code only, never by its
content (report text is PHI, DESIGN.md §5), and the other lines go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from collectors.bounded_json import ParseLimits, decode
from collectors.errors import InvalidEvent, Reason
from collectors.labeler.labeler import ReportLabeler

# A long CT report is ~10,000 characters; 200,000 leaves room and still bounds one line.
REPORT_LIMITS = ParseLimits(max_string_chars=200_000, max_object_keys=64, max_depth=8)
MAX_LINE_BYTES = 1 << 20


@dataclass(frozen=True)
class BadLine:
    """A refused input line: its 1-based number, a dead-letter reason code and a message
    that repeats none of the line."""

    number: int
    reason: str
    message: str

    def __str__(self) -> str:
        return f"line {self.number}: {self.reason}: {self.message}"


@dataclass(frozen=True)
class DeriveSummary:
    """What one run did: lines labelled, lines refused, and the labeler that labelled."""

    labelled: int
    bad: tuple[BadLine, ...]
    labeler: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {"labelled": self.labelled, "bad_lines": len(self.bad), "labeler": self.labeler}


def derive_lines(
    source: Iterable[bytes], sink: TextIO, labeler: ReportLabeler,
    findings: tuple[str, ...] | None = None, *, evidence: bool = False,
    on_bad: Any = None,
) -> DeriveSummary:  # fmt: skip
    """Label each line of `source` into `sink`; `on_bad(BadLine)` is called as each bad line
    is met (so a long file reports as it goes). Blank lines are skipped."""
    described = labeler.describe()
    labelled = 0
    bad: list[BadLine] = []
    for number, raw in enumerate(source, start=1):
        if not raw.strip():
            continue
        try:
            report_id, text = parse_line(raw)
        except InvalidEvent as exc:
            bad.append(BadLine(number, str(exc.reason), exc.message))
            if on_bad is not None:
                on_bad(bad[-1])
            continue
        result = labeler.label(text, findings)
        line: dict[str, Any] = {"id": report_id, "labels": dict(result.labels),
                                "labeler": described}  # fmt: skip
        if evidence:
            line["evidence"] = {f: s.as_dict() for f, s in result.evidence.items()}
        sink.write(json.dumps(line, ensure_ascii=False) + "\n")
        labelled += 1
    return DeriveSummary(labelled, tuple(bad), described)


def parse_line(raw: bytes) -> tuple[str | int, str]:
    """One input line → (id, text), or InvalidEvent with a reason code."""
    if len(raw) > MAX_LINE_BYTES:
        raise InvalidEvent(Reason.TOO_LARGE, f"line longer than {MAX_LINE_BYTES} bytes")
    doc = decode(raw.strip(), REPORT_LIMITS)
    if not isinstance(doc, dict):
        raise InvalidEvent(Reason.NOT_OBJECT, "a line must be a JSON object")
    report_id, text = doc.get("id"), doc.get("text")
    if report_id is None or text is None:
        missing = "id" if report_id is None else "text"
        raise InvalidEvent(Reason.MISSING_FIELD, f'"{missing}" is missing')
    if isinstance(report_id, bool) or not isinstance(report_id, str | int):
        raise InvalidEvent(Reason.WRONG_TYPE, '"id" must be a string or an integer')
    if not isinstance(text, str):
        raise InvalidEvent(Reason.WRONG_TYPE, '"text" must be a string')
    return report_id, text

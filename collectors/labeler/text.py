"""Report text → sections, sentences and word tokens, each with character offsets.

First step of the report labeler (collectors/labeler): the HL7/FHIR listeners and
`radwatch labels derive` hand it raw report text; everything after works on the offsets
returned here, so a label can point back at its sentence without carrying the text.
Pure functions, no I/O; any string is accepted (a report is PHI and untrusted input).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Section headers of radiology reports (the RSNA/ACR report templates use INDICATION,
# COMPARISON, TECHNIQUE, FINDINGS, IMPRESSION; sites add synonyms). Matched at the start
# of a line or after a sentence end, followed by a colon: "FINDINGS: ...".
_HEADER_NAMES = {
    "findings": "findings",
    "finding": "findings",
    "report": "findings",
    "impression": "impression",
    "impressions": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "summary": "impression",
    "opinion": "impression",
    "indication": "indication",
    "indications": "indication",
    "history": "indication",
    "clinical history": "indication",
    "clinical information": "indication",
    "clinical indication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "reason for study": "indication",
    "comparison": "comparison",
    "comparisons": "comparison",
    "technique": "technique",
    "exam": "technique",
    "examination": "technique",
    "procedure": "technique",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
}
_HEADER = re.compile(
    r"(?:^|(?<=[\n.;]))[ \t]*("
    + "|".join(sorted((re.escape(n) for n in _HEADER_NAMES), key=len, reverse=True))
    + r")[ \t]*:",
    re.IGNORECASE,
)
# What the labeler reads: the radiologist's observations and conclusion. The indication
# ("r/o pneumonia") and comparison say nothing about this study's findings.
READ_SECTIONS = frozenset({"findings", "impression", "recommendation", ""})

# A sentence ends at . ! ? or ; followed by white space (so "3.5 cm" and "x-XXXX." inner
# dots stay inside), or at a line break with a blank line or a list number after it.
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n\s*\n|\n(?=\s*\d+[.)]\s)")
# Word tokens keep inner hyphens and apostrophes ("x-ray", "can't"); every other
# non-space character is a token of its own (punctuation ends no scope by itself).
_TOKEN = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*|[^\w\s]|_+")


@dataclass(frozen=True)
class Section:
    """A part of the report: `name` is a normalised header ("" before the first header)."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Token:
    """A word or punctuation mark: lower-cased `norm`, offsets into the report text."""

    norm: str
    start: int
    end: int

    @property
    def is_word(self) -> bool:
        return self.norm[:1].isalnum()

    @property
    def is_redacted(self) -> bool:
        # De-identified public report sets (OpenI/Indiana: Demner-Fushman et al. 2016,
        # JAMIA 23:304) replace words with "XXXX"; such a token counts for nothing.
        return "xxxx" in self.norm


def sections(text: str) -> list[Section]:
    """The report's sections in order; one unnamed section when it has no known header."""
    found = [
        (m.start(1), m.end(), _HEADER_NAMES[_squash(m.group(1))]) for m in _HEADER.finditer(text)
    ]
    if not found:
        return [Section("", 0, len(text))]
    result: list[Section] = []
    if text[: found[0][0]].strip():
        result.append(Section("", 0, found[0][0]))
    for index, (_, body_start, name) in enumerate(found):
        end = found[index + 1][0] if index + 1 < len(found) else len(text)
        result.append(Section(name, body_start, end))
    return result


def sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) offsets of the non-blank sentences of text[start:end], trimmed."""
    stop = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in _SENTENCE_END.finditer(text, start, stop):
        spans.append((cursor, match.end()))
        cursor = match.end()
    spans.append((cursor, stop))
    return [trimmed for s, e in spans if (trimmed := _trim(text, s, e)) is not None]


def tokens(text: str, start: int, end: int) -> list[Token]:
    """The tokens of text[start:end], lower-cased, with offsets into text."""
    return [Token(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text, start, end)]


def _squash(header: str) -> str:
    return " ".join(header.lower().split())


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None

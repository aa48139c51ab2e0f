"""Report text → per-finding labels (1 positive, 0 negative, -1 uncertain; absent = not
mentioned), each with the character span of the sentence it came from.

The report labeler's entry point: `radwatch labels derive`, the HL7 v2 and FHIR listeners
call `ReportLabeler.label`; what leaves collectors/ is only these numbers, offsets and
SHA-256 hashes, never the text (DESIGN.md §5). Steps: sections and sentences
(collectors.labeler.text), finding mentions by the lexicon (collectors.labeler.lexicon),
their status by NegEx/ConText triggers (collectors.labeler.context), then one label per
finding. Versioned and fingerprinted like an embedder: the fingerprint is the SHA-256 of
the name, version, lexicon, triggers and scope, so a label says exactly which rules made it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from collectors.errors import CollectorError
from collectors.labeler.context import (
    MAX_SCOPE_WORDS,
    NEGATIVE,
    POSITIVE,
    TRIGGERS,
    UNCERTAIN,
    Cue,
    assert_mention,
    build_trigger_matcher,
)  # fmt: skip
from collectors.labeler.lexicon import DEFAULT_LEXICON, Lexicon, with_plurals
from collectors.labeler.phrases import PhraseMatcher
from collectors.labeler.text import READ_SECTIONS, Section, sections, sentences, tokens

# Bumped whenever the algorithm changes in a way the lexicon and triggers do not show.
LABELER_VERSION = "1.0.0"
DEFAULT_NAME = "radwatch-context"
# Read only when the report has neither FINDINGS nor IMPRESSION: everything but these.
_NEVER_READ = frozenset({"indication", "comparison"})


class LabelerError(CollectorError, ValueError):
    """A labeler cannot be built or asked as requested (unknown finding, bad lexicon)."""


@dataclass(frozen=True)
class Span:
    """Where a label came from: character offsets into the report and the SHA-256 of that
    text (UTF-8), so a reviewer holding the report can check it; the text never travels."""

    start: int
    end: int
    sha256: str

    def as_dict(self) -> dict[str, object]:
        return {"start": self.start, "end": self.end, "sha256": self.sha256}


@dataclass(frozen=True)
class ReportLabels:
    """One report's labels: finding → 1/0/-1 (absent: not mentioned), and the span of the
    sentence that decided each."""

    labels: Mapping[str, int] = field(default_factory=dict)
    evidence: Mapping[str, Span] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))


@dataclass(frozen=True)
class _Mention:
    finding: str
    status: int
    impression: bool
    span: tuple[int, int]


class ReportLabeler:
    """Built once (lexicon and triggers compiled), then `label` is a pure function."""

    def __init__(
        self, lexicon: Lexicon = DEFAULT_LEXICON, *, name: str = DEFAULT_NAME,
        version: str = LABELER_VERSION, triggers: Mapping[Cue, tuple[str, ...]] = TRIGGERS,
        max_scope: int = MAX_SCOPE_WORDS,
    ) -> None:  # fmt: skip
        if not lexicon.terms or any(not phrases for phrases in lexicon.terms.values()):
            raise LabelerError("the lexicon needs at least one finding, each with a phrase")
        self.name, self.version, self.lexicon = name, version, lexicon
        self._max_scope = max_scope
        self._triggers = build_trigger_matcher(dict(triggers))
        self._terms: PhraseMatcher[tuple[str, ...]] = PhraseMatcher(_phrase_table(lexicon))
        payload = {
            "name": name, "version": version, "lexicon": lexicon.canonical(),
            "triggers": {str(cue): sorted(p) for cue, p in sorted(triggers.items())},
            "max_scope": max_scope, "sections": sorted(READ_SECTIONS),
        }  # fmt: skip
        canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        self.fingerprint = hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def findings(self) -> tuple[str, ...]:
        return self.lexicon.findings

    def describe(self) -> dict[str, str]:
        """The `labeler` object of output lines and label events (interfaces: name,
        version, fingerprint)."""
        return {"name": self.name, "version": self.version, "fingerprint": self.fingerprint}

    def label(self, text: str, findings: Iterable[str] | None = None) -> ReportLabels:
        """Labels for `findings` (default: all the lexicon's) from one report's text."""
        wanted = self._wanted(findings)
        mentions = [m for m in self._mentions(text) if m.finding in wanted]
        labels: dict[str, int] = {}
        evidence: dict[str, Span] = {}
        for finding in sorted({m.finding for m in mentions}):
            own = [m for m in mentions if m.finding == finding]
            # The IMPRESSION is the radiologist's conclusion: when it names the finding
            # it decides, whatever the FINDINGS section said (it wins on conflict).
            chosen = [m for m in own if m.impression] or own
            value = _aggregate(m.status for m in chosen)
            start, end = next(m.span for m in chosen if m.status == value)
            labels[finding] = value
            evidence[finding] = Span(start, end, _sha256(text[start:end]))
        return ReportLabels(labels, evidence)

    def _wanted(self, findings: Iterable[str] | None) -> frozenset[str]:
        if findings is None:
            return frozenset(self.findings)
        wanted = frozenset(findings)
        unknown = sorted(wanted - set(self.findings))
        if unknown:
            raise LabelerError(f"findings not in the lexicon: {', '.join(unknown)}")
        return wanted

    def _mentions(self, text: str) -> list[_Mention]:
        found: list[_Mention] = []
        for section in _read(sections(text)):
            for start, end in sentences(text, section.start, section.end):
                toks = tokens(text, start, end)
                hits = self._terms.find(toks)
                if not any(hit.value for hit in hits):
                    continue
                cues = self._triggers.find(toks)
                for hit in hits:
                    status, _ = assert_mention(toks, hit, cues, self._max_scope)
                    found.extend(
                        _Mention(f, status, section.name == "impression", (start, end))
                        for f in hit.value
                    )
        return found


def default_labeler() -> ReportLabeler:
    """The default chest-radiography labeler (DEFAULT_LEXICON, the ConText triggers)."""
    return ReportLabeler()


def _read(parts: list[Section]) -> list[Section]:
    # FINDINGS and IMPRESSION when the report has them; otherwise everything except the
    # indication and comparison (a short report may be one unheaded paragraph).
    if any(part.name in ("findings", "impression") for part in parts):
        return [part for part in parts if part.name in READ_SECTIONS]
    return [part for part in parts if part.name not in _NEVER_READ]


def _phrase_table(lexicon: Lexicon) -> list[tuple[str, tuple[str, ...]]]:
    # A phrase may name two findings ("hydropneumothorax"); an exclusion names none but
    # still hides the term inside it (longest match).
    table: dict[str, list[str]] = {}
    for finding, phrases in lexicon.terms.items():
        for phrase in with_plurals(phrases):
            table.setdefault(phrase.lower(), []).append(finding)
    for phrases in lexicon.exclusions.values():
        for phrase in phrases:
            table.setdefault(phrase.lower(), [])
    return [(phrase, tuple(names)) for phrase, names in table.items()]


def _aggregate(statuses: Iterable[int]) -> int:
    # CheXpert's rule (Irvin et al. 2019): positive if any mention is positive, else
    # uncertain if any is uncertain, else negative.
    seen = set(statuses)
    if POSITIVE in seen:
        return POSITIVE
    return UNCERTAIN if UNCERTAIN in seen else NEGATIVE


def _sha256(text: str) -> str:
    # surrogatepass: arbitrary str (lone surrogates included) hashes instead of raising.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

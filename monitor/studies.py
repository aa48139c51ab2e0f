"""A study pseudonym back to what a PACS opens (`radwatch studies resolve`), for an authorised user.

Beside the stored data, at the PACS edge: radwatch stores only keyed HMAC pseudonyms of
StudyInstanceUID and AccessionNumber (collectors/pseudonym.py, DESIGN.md §5), which cannot be
inverted. Whoever holds the key can still find the study: pseudonymise each candidate the
hospital's own systems list — the studies the allow-listed PACS holds around the study's event
date (DICOMweb QIDO-RS "Search for Studies", PS3.18 §10.6, through the fenced client of
collectors/images/dicomweb.py), or a worklist export given as a file — and keep the one whose
pseudonym matches. Every lookup is recorded in the audit trail with who asked and for which
pseudonym, never with the identifier it found; the identifier goes to the caller only.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg

from collectors.pseudonym import Pseudonymiser
from monitor.audit import trail
from monitor.errors import RadwatchError

# DICOM tags in the QIDO-RS JSON answer (PS3.18 F.2): StudyInstanceUID, AccessionNumber.
STUDY_INSTANCE_UID, ACCESSION_NUMBER = "0020000D", "00080050"
QIDO_ACCEPT = "application/dicom+json"
PAGE = 200  # studies per QIDO-RS page (limit/offset, PS3.18 §8.3.4.4)
MAX_PAGES = 500  # 100,000 studies around one date: past that the search is refused, not cut
# The pseudonym kinds collectors/events.py gives a study's identifiers.
KINDS = (("study_uid", "StudyInstanceUID"), ("accession", "AccessionNumber"))


class StudyLookupError(RadwatchError):
    """The lookup could not run (unknown pseudonym with no candidates, PACS refused)."""


@dataclass(frozen=True)
class Candidate:
    """One study a hospital system lists: its UID and/or its accession (either may be None)."""

    study_uid: str | None
    accession: str | None


@dataclass(frozen=True)
class Resolution:
    """The study a pseudonym names; `matched` says which identifier's pseudonym it is."""

    pseudonym: str
    matched: str  # "StudyInstanceUID" | "AccessionNumber"
    study_uid: str | None
    accession: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {"pseudonym": self.pseudonym, "matched": self.matched,
                "study_instance_uid": self.study_uid, "accession_number": self.accession}  # fmt: skip


def match(pseudonym: str, key: Pseudonymiser, candidates: Iterable[Candidate]) -> Resolution | None:
    """The first candidate whose StudyInstanceUID or AccessionNumber pseudonymises to
    `pseudonym` under `key` (the same kinds the collector used), or None."""
    wanted = pseudonym.strip().lower()
    for candidate in candidates:
        for (kind, name), value in zip(
            KINDS, (candidate.study_uid, candidate.accession), strict=True
        ):
            if value and key(kind, value.strip()) == wanted:
                return Resolution(wanted, name, candidate.study_uid, candidate.accession)
    return None


def candidates_from_lines(lines: Iterable[str]) -> Iterator[Candidate]:
    """A worklist export, one accession or Study Instance UID per line: each line is tried
    as both (blank lines and `#` comments skipped)."""
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#"):
            yield Candidate(study_uid=text, accession=text)


def event_dates(conn: psycopg.Connection, pseudonym: str) -> tuple[date, date] | None:
    """The first and last event dates (UTC) of the inferences carrying this study or
    accession pseudonym, or None when no stored inference does."""
    row = conn.execute(
        """SELECT min(occurred_at), max(occurred_at) FROM inferences
           WHERE study_pseudo = %(p)s OR accession_pseudo = %(p)s""",
        {"p": pseudonym.strip().lower()},
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return row[0].date(), row[1].date()


def qido_candidates(client, base_urls: Iterable[str], first: date, last: date,
                    budget) -> Iterator[Candidate]:  # fmt: skip
    """The studies each listed PACS holds with a StudyDate in [first, last], page by page
    (`client`: a collectors.images.dicomweb.DicomWebClient; `budget`: its ByteBudget)."""
    from collectors.errors import ResolveError
    from collectors.images.byte_budget import Lease

    dates = f"{first:%Y%m%d}-{last:%Y%m%d}"  # a DICOM DA range (PS3.4 C.2.2.2.5.1)
    for base in base_urls:
        for page in range(MAX_PAGES):
            query = urllib.parse.urlencode({"StudyDate": dates, "includefield": ACCESSION_NUMBER,
                                            "limit": PAGE, "offset": page * PAGE})  # fmt: skip
            lease = Lease(budget, time.monotonic() + client.timeout_s)
            try:
                body = client.fetch(f"{base}/studies?{query}", lease, accept=QIDO_ACCEPT)
            except ResolveError as exc:
                raise StudyLookupError(f"the PACS search failed: {exc}") from exc
            finally:
                lease.release()
            found = json.loads(body) if body.strip() else []  # 204 No Content: none
            for study in found:
                yield Candidate(_first_value(study, STUDY_INSTANCE_UID),
                                _first_value(study, ACCESSION_NUMBER))  # fmt: skip
            if len(found) < PAGE:
                break
        else:
            raise StudyLookupError(f"over {MAX_PAGES * PAGE} studies around that date; "
                                   "give --candidates FILE instead")  # fmt: skip


def audit_lookup(conn: psycopg.Connection, *, actor: str, pseudonym: str, source: str,
           candidates: int, found: Resolution | None) -> None:  # fmt: skip
    """The audit row of one lookup: who, which pseudonym, how, whether it matched; never the
    identifier (the trail is exported to places the PACS identifiers must not go)."""
    trail.record(conn, actor=actor, action="study.resolved", entity_type="study",
                 entity_id=pseudonym.strip().lower(),
                 outcome="success" if found else "not_found",
                 detail={"source": source, "candidates": candidates,
                         "matched": found.matched if found else None})  # fmt: skip


def search_window(dates: tuple[date, date], margin_days: int) -> tuple[date, date]:
    """The event dates widened by `margin_days` each side: StudyDate is the acquisition's
    local date, the event's is when the model ran (UTC), often the next day."""
    return dates[0] - timedelta(days=margin_days), dates[1] + timedelta(days=margin_days)


def _first_value(study: dict, tag: str) -> str | None:
    values = (study.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else None

"""Keyed pseudonyms for identifiers, applied at the input edge (DESIGN.md §5).

Every identifier (patient ID, accession, study/series/SOP UIDs, station names) is replaced
by HMAC-SHA256 under the configured key before anything is stored, logged or measured.
The same key gives the same pseudonym, so labels still join to inferences.

`is_identifier_key` decides which keys of free-form JSON (an event's allow-listed extra
fields) look like they name a person, a place or free text; `Pseudonymiser.redact` drops
them, key and value together, wherever they appear.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

# Substrings of a key (lower-cased, separators removed) that mark it as naming a person,
# an identifier, a place, a date or free text. Matching is deliberately broad: a dropped
# harmless field costs little, a kept name costs a breach.
IDENTIFIER_FRAGMENTS = (
    "patient", "name", "birth", "dob", "mrn", "accession", "uid", "ssn", "social",
    "address", "street", "city", "zip", "postal", "phone", "mobile", "fax", "email", "mail",
    "physician", "doctor", "operator", "referring", "performing", "reader", "author",
    "institution", "hospital", "station", "device", "serial", "insurance", "account",
    "date", "note", "comment", "text", "report", "description", "remark", "narrative",
    "uri", "url", "path", "file", "host",
)  # fmt: skip
# Whole words (after splitting snake_case, kebab-case and camelCase) that mark a key.
IDENTIFIER_WORDS = frozenset({"id", "ids", "pid", "ip", "mac", "age", "dob", "ssn", "mrn"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")

# Kept for callers that name the contract's identifier keys explicitly.
IDENTIFIER_KEYS = frozenset(
    {
        "patient_id",
        "accession",
        "study_uid",
        "series_uid",
        "sop_uid",
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "AccessionNumber",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "StationName",
        "InstitutionName",
        "ReferringPhysicianName",
        "OtherPatientIDs",
        "uri",
    }
)
# Distinct (kind, value) pairs remembered: more than a batch holds (500 records × 6
# identifiers by default), so each distinct identifier of a batch is computed once; the memo
# is emptied when full, so raw identifiers never pile up in memory.
PSEUDONYM_CACHE_SIZE = 16_384
# Deeper than this, redact() drops the value instead of descending (the parser already
# refuses deeper documents; this keeps redact total on anything it is handed).
MAX_REDACT_DEPTH = 64


def is_identifier_key(key: object) -> bool:
    """True when a JSON key looks like it names an identifier, a person or free text."""
    if not isinstance(key, str):
        return True
    if key in IDENTIFIER_KEYS:
        return True
    flat = "".join(ch for ch in key.lower() if ch.isalnum())
    if any(fragment in flat for fragment in IDENTIFIER_FRAGMENTS):
        return True
    return any(word.lower() in IDENTIFIER_WORDS for word in _WORDS.findall(key))


class Pseudonymiser:
    """HMAC-SHA256 pseudonyms, domain-separated by kind so a UID and an ID never collide."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes")
        self._key = key
        # Keyed by the HMAC's message itself: a str key costs no tuple, and a dict of strs
        # alone is never scanned by the garbage collector.
        self._memo: dict[str, str] = {}
        # HMAC (RFC 2104) with its two keyed SHA-256 states computed once: each pseudonym
        # then costs two state copies, a third of a one-shot hmac.digest (which redoes the
        # key schedule every call; this runs several times per event on the ingest hot path).
        block = hashlib.sha256().block_size
        padded = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

    def __reduce__(self) -> tuple[type[Pseudonymiser], tuple[bytes]]:
        # Sent to the image decoding processes (collectors.images.decode_pool): the keyed hash
        # states cannot be pickled, so the receiver rebuilds them from the key (the memo,
        # raw identifiers, stays behind).
        return (Pseudonymiser, (self._key,))

    def __call__(self, kind: str, value: str) -> str:
        memo = self._memo
        message = f"{kind}\x00{value}"
        pseudonym = memo.get(message)
        if pseudonym is None:
            inner = self._inner.copy()
            inner.update(message.encode())
            outer = self._outer.copy()
            outer.update(inner.digest())
            # 128 bits is ample against collisions for any hospital's volume; keeps rows small.
            pseudonym = outer.digest()[:16].hex()
            if len(memo) >= PSEUDONYM_CACHE_SIZE:
                memo.clear()
            memo[message] = pseudonym
        return pseudonym

    def redact(self, value: Any, _depth: int = 0) -> Any:
        """A copy of a JSON value without identifier-looking keys (key and value dropped).

        Recursion is bounded by MAX_REDACT_DEPTH, so an untrusted tree cannot exhaust the
        stack; anything deeper becomes None.
        """
        if _depth > MAX_REDACT_DEPTH:
            return None
        if isinstance(value, dict):
            return {
                key: self.redact(item, _depth + 1)
                for key, item in value.items()
                if not is_identifier_key(key)
            }
        if isinstance(value, list):
            return [self.redact(item, _depth + 1) for item in value]
        return value

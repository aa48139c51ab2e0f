"""Pseudonyms: HMAC-SHA256 as RFC 2104 defines it, each distinct identifier computed once."""

from __future__ import annotations

import hmac
import pickle
from typing import Any

import pytest

from collectors import pseudonym as pseudonym_module
from collectors.pseudonym import Pseudonymiser

KEY = b"cache-test-key-0123456789"


def _reference(kind: str, value: str, key: bytes = KEY) -> str:
    return hmac.digest(key, f"{kind}\x00{value}".encode(), "sha256")[:16].hex()


@pytest.mark.parametrize("size", [16, 32, 63, 64, 65, 200])
def test_pseudonyms_are_the_standard_hmac_for_any_key_length(size: int) -> None:
    key = bytes(range(256))[:size]
    p = Pseudonymiser(key)
    for kind, value in [("patient_id", "P1"), ("uri", "é" * 100), ("study_uid", "")]:
        assert p(kind, value) == _reference(kind, value, key)


class _CountingState:
    """Stands in for a keyed SHA-256 state and counts how often a pseudonym is computed."""

    def __init__(self, state: Any) -> None:
        self.state, self.copies = state, 0

    def copy(self) -> Any:
        self.copies += 1
        return self.state.copy()


def test_each_distinct_identifier_is_computed_once() -> None:
    p = Pseudonymiser(KEY)
    counting = _CountingState(p._inner)
    p._inner = counting
    # A batch of 500 records sharing 20 patients, each identifier asked for twice.
    pairs = [("patient_id", f"P{i % 20}") for i in range(500)] * 2 + [("study_uid", "1.2")] * 50
    got = [p(kind, value) for kind, value in pairs]
    assert counting.copies == 21  # 20 patients + 1 study, each once
    assert got == [_reference(kind, value) for kind, value in pairs]
    # Kinds stay domain-separated in the memo too.
    assert p("accession", "P1") != p("patient_id", "P1")


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pseudonym_module, "PSEUDONYM_CACHE_SIZE", 8)
    p = Pseudonymiser(KEY)
    for i in range(100):
        assert p("sop_uid", str(i)) == _reference("sop_uid", str(i))
        assert len(p._memo) <= 8


def test_a_pseudonymiser_crosses_to_a_decoding_process():
    """The image stage sends its Pseudonymiser to the decode pool's processes (pickled): the
    copy gives the same pseudonyms and carries no remembered identifier."""
    original = Pseudonymiser(b"k" * 40)
    original("study", "2.25.1")
    copy = pickle.loads(pickle.dumps(original))
    assert copy("study", "2.25.1") == original("study", "2.25.1")
    assert copy("accession", "A1") == original("accession", "A1")
    assert b"2.25.1" not in pickle.dumps(original)

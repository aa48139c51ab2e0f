"""The pseudonym memo: each distinct identifier of a batch is computed once, and bounded."""

from __future__ import annotations

import hmac

import pytest

from collectors import pseudonym as pseudonym_module
from collectors.pseudonym import Pseudonymiser

KEY = b"cache-test-key-0123456789"


def _reference(kind: str, value: str) -> str:
    return hmac.digest(KEY, f"{kind}\x00{value}".encode(), "sha256")[:16].hex()


def test_each_distinct_identifier_is_computed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []
    real = hmac.digest

    def counting(key: bytes, msg: bytes, digest: str) -> bytes:
        calls.append(msg)
        return real(key, msg, digest)

    monkeypatch.setattr(pseudonym_module.hmac, "digest", counting)
    p = Pseudonymiser(KEY)
    # A batch of 500 records sharing 20 patients, each identifier asked for twice.
    pairs = [("patient_id", f"P{i % 20}") for i in range(500)] * 2 + [("study_uid", "1.2")] * 50
    got = [p(kind, value) for kind, value in pairs]
    assert len(calls) == 21  # 20 patients + 1 study, each once
    monkeypatch.undo()
    assert got == [_reference(kind, value) for kind, value in pairs]
    # Kinds stay domain-separated in the memo too.
    assert p("accession", "P1") != p("patient_id", "P1")


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pseudonym_module, "PSEUDONYM_CACHE_SIZE", 8)
    p = Pseudonymiser(KEY)
    for i in range(100):
        assert p("sop_uid", str(i)) == _reference("sop_uid", str(i))
        assert len(p._memo) <= 8

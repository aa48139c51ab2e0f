"""Hypothesis: any text, report-like or not, gives labels in {-1, 0, 1} with spans inside the
text whose hash matches; the labeler never raises (report text is untrusted input)."""

from __future__ import annotations

import hashlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.labeler import DEFAULT_FINDINGS, default_labeler

LABELER = default_labeler()
WORDS = ["no", "not", "possible", "pneumothorax", "effusion", "is", "seen", "but", "XXXX",
         "FINDINGS:", "IMPRESSION:", "INDICATION:", "cannot", "be", "excluded", "?", ".", ";",
         "\n", "heart", "enlarged", "nodules", "mass", "effect", "no increase in", "x-XXXX",
         "can't", "r/o", ",", "resolved", "3.5", "cm", "\n\n1.", "ı", "\u0130", "é"]  # fmt: skip
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    result = LABELER.label(text)
    assert set(result.labels) <= set(DEFAULT_FINDINGS)
    assert set(result.labels.values()) <= {-1, 0, 1}
    assert set(result.evidence) == set(result.labels)
    for span in result.evidence.values():
        assert 0 <= span.start < span.end <= len(text)
        piece = text[span.start : span.end].encode("utf-8", "surrogatepass")
        assert span.sha256 == hashlib.sha256(piece).hexdigest()


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises_and_spans_are_inside(text):
    check(text)


@FUZZ
@given(st.lists(st.sampled_from(WORDS), max_size=60).map(" ".join))
def test_report_like_text_never_raises_and_spans_are_inside(text):
    check(text)

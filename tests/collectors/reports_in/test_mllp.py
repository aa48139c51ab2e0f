"""MLLP framing (collectors.reports_in.mllp): blocks split anywhere, junk, oversized blocks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.reports_in import MllpDecoder, ReportError, ReportReason, frame


def test_frame_wraps_in_vt_and_fs_cr() -> None:
    assert frame(b"MSH|x") == b"\x0bMSH|x\x1c\r"
    with pytest.raises(ReportError) as info:
        frame(b"MSH|\x1c")
    assert info.value.reason is ReportReason.BAD_FRAMING


@given(st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b"")),
                min_size=1, max_size=5),
       st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20))  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_messages_survive_any_split_of_the_stream(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(m) for m in messages)
    decoder = MllpDecoder()
    got, i, k = [], 0, 0
    while i < len(stream):
        step = cuts[k % len(cuts)]
        got += decoder.feed(stream[i : i + step])
        i, k = i + step, k + 1
    assert [f.content for f in got] == messages and all(f.error is None for f in got)
    assert decoder.pending_bytes == 0


def test_junk_between_blocks_is_reported_and_the_next_block_still_read() -> None:
    frames = MllpDecoder().feed(b"hello" + frame(b"A") + b"\r\n" + frame(b"B"))
    assert frames[0].error is not None and frames[0].error.reason is ReportReason.BAD_FRAMING
    assert [f.content for f in frames[1:]] == [b"A", b"B"]


def test_missing_cr_after_fs_is_tolerated() -> None:
    frames = MllpDecoder().feed(b"\x0bA\x1c\x0bB\x1c\r")
    assert [f.content for f in frames] == [b"A", b"B"]


def test_an_oversized_block_is_refused_without_buffering_it_and_the_next_is_read() -> None:
    decoder = MllpDecoder(max_frame_bytes=1000)
    got = decoder.feed(b"\x0b" + b"x" * 600)
    for _ in range(100):  # 60 kB more of the same block, in pieces
        got += decoder.feed(b"x" * 600)
        assert decoder.pending_bytes <= 1000
    got += decoder.feed(b"\x1c\r" + frame(b"small"))
    assert got[0].content is None and got[0].error is not None
    assert got[0].error.reason is ReportReason.TOO_LARGE and got[0].size == 60_600
    assert got[1].content == b"small"


@given(st.binary(max_size=2000))
@settings(max_examples=300, deadline=None)
def test_any_bytes_give_frames_or_framing_errors(data: bytes) -> None:
    decoder = MllpDecoder(max_frame_bytes=256)
    for f in decoder.feed(data):
        assert (f.content is None) != (f.error is None)
        if f.content is not None:
            assert len(f.content) <= 256 and b"\x1c" not in f.content
    assert decoder.pending_bytes <= 256

"""The in-flight byte budget and the capped read the image sources share.

Mirrors collectors.images.byte_budget: the budget makes concurrent fetches wait rather than add
up; the capped read never holds more than one byte past its cap.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable

import pytest

from collectors.errors import Reason, ResolveError
from collectors.images.byte_budget import CHUNK, ByteBudget, read_capped


def test_the_byte_budget_makes_concurrent_fetches_wait() -> None:
    budget = ByteBudget(100)
    assert budget.acquire(80, time.monotonic() + 1) == 80
    got: list[float] = []

    def second() -> None:
        budget.acquire(50, time.monotonic() + 5)
        got.append(time.monotonic())

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.3)
    assert not got and budget.used == 80  # 80 + 50 > 100: the second one waits
    released = time.monotonic()
    budget.release(80)
    thread.join(5)
    assert got and got[0] >= released and budget.used == 50
    budget.release(50)
    assert budget.acquire(500, time.monotonic() + 1) == 100  # one alone may use it all
    with pytest.raises(ResolveError) as info:
        budget.acquire(60, time.monotonic() + 0.2)  # 100 held: no room before the deadline
    assert info.value.reason == Reason.IMAGE_TIMEOUT and info.value.parkable


def _source(data: bytes, asked: list[int]) -> Callable[[int], bytes]:
    """A read(n) over `data` that records what it was asked for."""
    stream = io.BytesIO(data)

    def read(n: int) -> bytes:
        asked.append(n)
        return stream.read(n)

    return read


def test_the_capped_read_asks_for_at_most_one_byte_past_the_cap() -> None:
    asked: list[int] = []
    assert read_capped(_source(b"x" * 100, asked), 100, "file") == b"x" * 100  # the cap itself
    assert asked == [101, 1]
    big = b"y" * (3 * CHUNK)
    asked.clear()
    assert read_capped(_source(big, asked), 4 * CHUNK, "file") == big
    assert max(asked) == CHUNK  # one read is bounded by the chunk, not by the cap
    asked.clear()
    with pytest.raises(ResolveError) as info:  # a source larger than it said it was
        read_capped(_source(b"z" * 1000, asked), 100, "response")
    assert (info.value.reason, info.value.message) == (
        Reason.TOO_LARGE, "response is over the 100-byte limit"
    )  # fmt: skip
    assert not info.value.parkable and asked == [101]  # one byte past the cap is enough
    assert read_capped(_source(b"", []), 100, "file") == b""

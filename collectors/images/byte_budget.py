"""What one fetch may hold: the fetcher's in-flight byte budget, a fetch's lease, the capped read.

Below every image source (collectors.images.file_source, collectors.images.dicomweb and the
data: URIs of collectors.images.resolver): each reserves the bytes it is about to hold on its
`Lease`, so the fetcher's concurrent fetches together never hold more than the budget; the two
that read a stream (a file, a socket) read it through `read_capped`, so neither holds more
than the cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from collectors.errors import Reason, ResolveError

CHUNK = 1 << 20  # bytes per read: bounds one read's allocation, not the object's size


class ByteBudget:
    """A counting semaphore on bytes: concurrent fetches wait rather than add up past `total`."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, deadline: float) -> int:
        n = min(n, self.total)  # one fetch alone may always use the whole budget
        with self._cond:
            while self._used + n > self.total:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ResolveError(
                        Reason.IMAGE_TIMEOUT,
                        "no room in the in-flight image bytes budget before the deadline",
                        parkable=True,
                    )
                self._cond.wait(remaining)
            self._used += n
        return n

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()

    @property
    def used(self) -> int:
        return self._used


class Lease:
    """The bytes one load holds in the budget, released once its image is decoded."""

    def __init__(self, budget: ByteBudget, deadline: float) -> None:
        self.budget, self.deadline, self.held = budget, deadline, 0

    def reserve(self, n: int) -> None:
        self.held += self.budget.acquire(n, self.deadline)

    def release(self) -> None:
        if self.held:
            self.budget.release(self.held)
            self.held = 0


def read_capped(read: Callable[[int], bytes], cap: int, what: str) -> bytes:
    """Everything `read` gives until it returns b"", refused once past `cap` bytes.

    `read(n)` returns at most n bytes (an os.read on a file, one recv on a socket). It is never
    asked for more than one byte past the cap, so a source that is larger than it said (a file
    growing while read, a chunked body with no declared length) stops at the limit, not at its
    end.
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = read(min(CHUNK, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise ResolveError(Reason.TOO_LARGE, f"{what} is over the {cap}-byte limit")
        chunks.append(chunk)

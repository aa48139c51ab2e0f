"""Helpers every test module shares: a free local port, and polling with a deadline.

Importable as `support` (tests/ is on sys.path through the root conftest). The real servers
for the image path (Orthanc and the misbehaving PACS stand-ins) are in tests/pacs_servers.py;
the module-scoped `pacs` fixture that starts Orthanc is in tests/conftest.py.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    check: Callable[[], None] | None = None,
    details: Callable[[], str] | None = None,
) -> float:
    """Poll `predicate` until it is true; return the seconds that took.

    `check` runs between polls and raises to fail at once (a worker that died meanwhile);
    `details` is appended to the timeout message (its log tail, say).
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        if check is not None:
            check()
        time.sleep(interval)
    extra = f"\n{details()}" if details is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}{extra}")

"""Helpers every test module shares: a free local port, polling with a deadline, and the
Prometheus rule files with short holds for tests that wait for an alert to fire.

Importable as `support` (tests/ is on sys.path through the root conftest). The real servers
for the image path (Orthanc and the misbehaving PACS stand-ins) are in tests/pacs_servers.py;
the module-scoped `pacs` fixture that starts Orthanc is in tests/conftest.py.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable
from pathlib import Path

import yaml


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


def rules_with_short_holds(rules_dir: Path, dest: Path, hold: str = "3s") -> Path:
    """A copy of the Prometheus rule files in `rules_dir` whose every alert waits `hold`
    (its `for:`) before firing; returns the copy's folder. Nothing else changes: the same
    alerts, expressions, labels and annotations, byte for byte.

    For tests that read Prometheus's ALERTS series: the deployed holds (1m, 2m, ...) are
    checked by promtool's unit tests (tests/deploy/test_prometheus_rules.py); a test that
    only needs an alert to go pending and then fire need not sit through them. An alert still
    goes pending first and fires one hold later, as deployed.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(rules_dir.glob("*.rules.yml")):
        text = path.read_text()
        alerts = [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]
                  if "for" in rule]  # fmt: skip
        short, n = re.subn(r"^(\s+for:\s*)\S+[ \t]*$", rf"\g<1>{hold}", text, flags=re.M)
        # Every rule's hold and nothing else: a reformatted rule file fails here, not later.
        assert n == len(alerts), f"{path}: {n} `for:` lines rewritten, {len(alerts)} rules hold"
        (dest / path.name).write_text(short)
    return dest

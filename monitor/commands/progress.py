"""Progress of the command line's long steps: a bar on a terminal, a log line every 10 s otherwise.

Beside the commands (DESIGN.md §9): a step that can take more than a few seconds (collect,
reference build, embed backfill, simulate, detect, report) runs inside `tracked(...)` and, when
it can count, calls `update`/`advance` on what it gets back. On a terminal (stderr is a tty)
that is a tqdm bar that keeps its clock running even while nothing is counted; under a
service manager, cron or CI it is one INFO line every `interval_s` seconds on the log, so a
silent minute is never mistaken for a hang. Lines carry counts and seconds only, never an
identifier (DESIGN.md §5). Not a command: `monitor.cli.COMMANDS` does not list it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

log = logging.getLogger(__name__)

INTERVAL_S = 10.0  # between log lines when stderr is not a terminal
_TTY_REFRESH_S = 0.5  # the bar's clock ticks this often while nothing is counted


class Tracker:
    """What a long step reports to: `update(done)` (absolute) or `advance(n)`; thread-safe
    enough for a counter read by the reporting thread (ints assigned atomically)."""

    def __init__(self, desc: str, total: int | None, unit: str | None) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.done = 0
        self.note: dict[str, Any] = {}
        self.started = time.monotonic()

    def update(self, done: int, **note: Any) -> None:
        self.done = done
        if note:
            self.note = note

    def advance(self, n: int = 1) -> None:
        self.done += n

    def line(self) -> str:
        """`desc: 120/500 studies, labels=80, 20 s` (the periodic log line); `desc: working,
        20 s` for a step that does not count."""
        elapsed = time.monotonic() - self.started
        if self.unit is None:
            return f"{self.desc}: working, {elapsed:.0f} s"
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        extra = "".join(f", {k}={v}" for k, v in self.note.items())
        return f"{self.desc}: {count} {self.unit}{extra}, {elapsed:.0f} s"


@contextmanager
def tracked(desc: str, *, total: int | None = None, unit: str | None = None,
            interval_s: float | None = None, stream: TextIO | None = None,
            poll: Callable[[Tracker], None] | None = None) -> Iterator[Tracker]:  # fmt: skip
    """Report the progress of the step run inside the block (see the module docstring).

    `poll(tracker)`, when given, is called before each report to read a counter the step
    keeps itself (e.g. the ingest worker's stats) into the tracker. `interval_s`: between
    log lines off a terminal (default INTERVAL_S). `unit=None` (the
    default): a step that does not count, shown as its running clock.
    """
    out = stream if stream is not None else sys.stderr
    every = INTERVAL_S if interval_s is None else interval_s
    tracker = Tracker(desc, total, unit)
    stop = threading.Event()

    def refresh() -> None:
        if poll is not None:
            poll(tracker)

    if _is_tty(out):
        from tqdm import tqdm

        clock = "{desc}: working {elapsed}" if unit is None else None
        bar = tqdm(total=total, desc=desc, unit=unit or "it", file=out, leave=False,
                   bar_format=clock)  # fmt: skip

        def tick() -> None:
            while not stop.wait(_TTY_REFRESH_S):
                refresh()
                bar.n = tracker.done
                if tracker.note:
                    bar.set_postfix(tracker.note, refresh=False)
                bar.refresh()

        finish = bar.close
    else:
        said = [False]

        def tick() -> None:
            while not stop.wait(every):
                refresh()
                log.info("%s", tracker.line())
                said[0] = True

        def finish() -> None:
            if said[0]:  # a step that was reported on says when it is done
                refresh()
                log.info("%s (done)", tracker.line())

    thread = threading.Thread(target=tick, name=f"progress-{desc}", daemon=True)
    thread.start()
    try:
        yield tracker
    finally:
        stop.set()
        thread.join()
        finish()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or stand-in stream
        return False

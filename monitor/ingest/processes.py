"""Several ingest workers under one `radwatch collect`: one process per consumer-group member.

Between the command (monitor/commands/collect_cmd.py) and the workers (monitor/ingest/
worker.py). One worker is bound by the interpreter's lock at about one core (the Kafka
client, parsing and row encoding share it; bench/ingest.py), so a box with cores to spare runs
one worker process per core, as a platform runs one pod per worker. Each child is a whole
`radwatch collect --processes 1`, with its own consumer, PostgreSQL connection and offset
commits; the group spreads the partitions over them. They share nothing but the broker and the
database, so every guarantee of one worker (at-least-once, idempotent writes, dead letters)
holds for each, and the PostgreSQL counters behind `radwatch metrics` count them all.

The parent starts them, passes SIGTERM and SIGINT on (each child finishes its batch and
commits), adds up what they report, and exits with the worst status among them, so a
supervisor sees a worker that failed.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)
COUNTS = ("inferences", "labels", "dead_letters", "batches")


@dataclass(frozen=True)
class GroupResult:
    """What the children did together, and the status the command exits with."""

    counts: dict[str, int]
    exit_code: int
    failed: int  # children that exited with a non-zero status


def child_command(global_args: Sequence[str], collect_args: Sequence[str]) -> list[str]:
    """The command line of one child: this interpreter, the same settings, one process."""
    return [sys.executable, "-m", "monitor", *global_args, "collect", *collect_args,
            "--processes", "1", "--json"]  # fmt: skip


def run_group(command: Sequence[str], processes: int) -> GroupResult:
    """Run `processes` copies of `command` until they all exit; signals are passed on."""
    children = [subprocess.Popen(list(command), stdout=subprocess.PIPE, text=True)
                for _ in range(processes)]  # fmt: skip
    log.info("collecting with %d worker processes", processes)

    def pass_on(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        outputs = [child.communicate()[0] for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = dict.fromkeys(COUNTS, 0)
    for output in outputs:
        for key, value in _last_document(output).items():
            if key in counts and isinstance(value, int):
                counts[key] += value
    codes = [_exit_status(child.returncode) for child in children]
    return GroupResult(counts, max(codes), sum(1 for code in codes if code))


def _last_document(output: str) -> dict[str, object]:
    """The child's `--json` summary (its last line), or nothing if it died before writing it."""
    lines = [line for line in (output or "").splitlines() if line.strip()]
    try:
        doc = json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _exit_status(code: int) -> int:
    # A child killed by a signal reports -signum; the shell's convention is 128 + signum.
    return 128 - code if code < 0 else code

"""`radwatch detect [--once]`: evaluate every due drift window and drive the alerts.

The command edge of monitor/drift/scheduler.py. One scheduler at a time (PostgreSQL advisory
lock): with --once a second one exits 1 at once; without, it waits for the lock.
"""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import timedelta
from typing import Any

from monitor.commands.arguments import positive_float, positive_int
from monitor.commands.output import emit, table
from monitor.commands.progress import tracked
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "detect", help="evaluate due drift windows, raise and resolve alerts",
        description="Example: radwatch detect --once",
    )  # fmt: skip
    parser.add_argument("--once", action="store_true", help="evaluate what is due, then exit")
    parser.add_argument("--interval", type=positive_float, default=30.0,
                        help="seconds between passes")  # fmt: skip
    parser.add_argument("--window", type=positive_int,
                        help="events per window (default: the reference's)")  # fmt: skip
    parser.add_argument(
        "--max-span-hours",
        type=positive_float,
        default=168.0,
        help="a window closes early when it would span longer than this",
    )
    parser.add_argument(
        "--flush", action="store_true", help="also evaluate a trailing partial window"
    )
    parser.add_argument("--json", action="store_true",
                        help="print the --once summary as JSON (for scripts) instead of text")  # fmt: skip
    parser.set_defaults(handler=_detect)


def _detect(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.drift.scheduler import DetectionConfig, Scheduler
    from monitor.services.runtime import resolve_endpoints

    # `--once` is a one-shot command: one try, one line and exit 2 when PostgreSQL is absent.
    # The loop is a service: it waits for PostgreSQL, logging what it waits for.
    url = resolve_endpoints(settings, broker=False, retry=not args.once).database_url
    config = DetectionConfig(window_size=args.window, flush=args.flush,
                             max_span=timedelta(hours=args.max_span_hours),
                             budget=settings.false_alarm_budget())  # fmt: skip
    scheduler = Scheduler(url, config, actor=f"{settings.actor}-detect")
    stop = threading.Event()
    if args.once:
        if not scheduler.acquire():
            print("another detection scheduler is active; nothing done")
            return 1
        try:
            with tracked("detect"):  # the clock only: the pass does not count
                run = scheduler.run_once()
        finally:
            scheduler.release()
        summary = {"windows": len(run.windows), "online_firings": len(run.online_firings),
                   "alert_changes": [c.__dict__ for c in run.changes],
                   "firing": [[w.seq, list(map(list, w.firing))] for w in run.windows
                              if w.firing]}  # fmt: skip
        emit(summary, args.json, lambda _: render_run(run), indent=2)
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set() and not scheduler.acquire():
        stop.wait(5.0)  # another scheduler is active: stand by
    try:
        scheduler.run_forever(args.interval, stop)
    finally:
        scheduler.release()
    return 0


def render_run(run: Any) -> list[str]:
    """A detection pass for people: windows per model, what fired, alert changes."""
    models: dict[str, list[Any]] = {}
    for window in run.windows:
        models.setdefault(window.model, []).append(window)
    lines = [f"detection pass: {len(run.windows)} window(s) evaluated, "
             f"{len(run.online_firings)} online firing(s), {len(run.changes)} alert change(s)"]  # fmt: skip
    for model, windows in models.items():
        drifted = [w for w in windows if w.firing]
        lines.append(f"model {model}: windows {windows[0].seq}..{windows[-1].seq}, "
                     f"{len(drifted)} with a signal firing")  # fmt: skip
        rows = [(w.seq, w.start.isoformat(timespec="minutes"), w.n_events,
                 "; ".join(f"{sig} at {kind}={value}" for kind, value, sig in w.firing))
                for w in drifted]  # fmt: skip
        if rows:
            lines.append(table(("window", "start", "events", "firing"), rows, indent="  "))
    for model, signal_name, when in run.online_firings:
        lines.append(f"online detector fired: {model} {signal_name} at {when}")
    if run.changes:
        lines.append("alert changes:")
        lines.append(table(("alert", "action", "model", "stratum", "signal", "state"),
                           [(c.alert_id, c.action, c.model, f"{c.stratum_kind}={c.stratum_value}",
                             c.signal, c.state) for c in run.changes], indent="  "))  # fmt: skip
    if run.failed:
        lines.append(f"models whose pass failed (see `radwatch status`): {', '.join(run.failed)}")
    return lines

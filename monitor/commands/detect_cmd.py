"""`radwatch detect [--once]`: evaluate every due drift window and drive the alerts.

The command edge of monitor/drift/scheduler.py. One scheduler at a time (PostgreSQL advisory
lock): with --once a second one exits 1 at once; without, it waits for the lock.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from datetime import timedelta

from monitor.commands.arguments import positive_float, positive_int
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
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=_detect)  # fmt: skip


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
            run = scheduler.run_once()
        finally:
            scheduler.release()
        summary = {"windows": len(run.windows), "online_firings": len(run.online_firings),
                   "alert_changes": [c.__dict__ for c in run.changes],
                   "firing": [[w.seq, list(map(list, w.firing))] for w in run.windows
                              if w.firing]}  # fmt: skip
        print(json.dumps(summary, indent=2 if args.json else None, default=str))
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

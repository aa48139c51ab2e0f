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
                             max_span=timedelta(hours=args.max_span_hours))  # fmt: skip
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


def demo_step(database_url: str, *, events: int) -> dict:
    """The drift part of `radwatch demo`: reference = the first 40% of the stream (the
    simulator's scenarios start half-way), windows of a tenth; prints a timeline and alerts.

    The online detector is left out of the demo: its false alarms are calibrated by the
    expected run time (2,000 events), which a short demo stream would make a coin toss.
    """
    from detectors.drift.contract import SuiteConfig
    from monitor.alerts import lifecycle
    from monitor.commands.alerts_cmd import format_alert
    from monitor.drift import reference
    from monitor.drift.scheduler import DetectionConfig, Scheduler
    from monitor.store import db

    window = max(50, events // 10)
    first = max(100, int(events * 0.4))
    config = SuiteConfig(calibration_window=window, online=False, min_window=20)
    print(f"drift: reference = first {first} inferences, windows of {window}")
    models = []
    with db.connect(database_url) as conn:
        models = [r[0] for r in conn.execute(
            "SELECT DISTINCT model_name FROM inferences ORDER BY 1").fetchall()]  # fmt: skip
        for model in models:
            try:
                info = reference.build(conn, model=model, first=first, config=config,
                                       actor="radwatch-demo")  # fmt: skip
            except reference.ReferenceError as exc:
                print(f"drift: {model}: no reference: {exc}")
                continue
            rates = info.calibration.get("false_alarm", {})
            print(f"drift: reference {info.id} for {model}: {info.n_events} events, "
                  f"held-out false-alarm rates {rates}")  # fmt: skip
    with Scheduler(database_url, DetectionConfig(), actor="radwatch-demo") as scheduler:
        run = scheduler.run_once()
    onset_index = events // 2
    for w in run.windows:
        first_idx = first + (w.seq - 1) * window
        marker = "  <- scenario onset" if first_idx <= onset_index < first_idx + w.n_events else ""
        fired = ", ".join(f"{s}@{k}={v}" for k, v, s in w.firing) or "-"
        opened = ", ".join(f"#{c.alert_id} {c.action}" for c in w.changes
                           if c.action != "updated") or ""  # fmt: skip
        print(f"  window {w.seq:>2} events {first_idx:>5}-{first_idx + w.n_events - 1:<5} "
              f"{w.start:%Y-%m-%d %H:%M} drift score {w.drift_score:5.2f}  firing: {fired}"
              f"{'  ALERT ' + opened if opened else ''}{marker}")  # fmt: skip
    with db.connect(database_url) as conn:
        found = lifecycle.list_alerts(conn)
    drift_alerts = [a for a in found if not a.signal.startswith("performance")]
    print(f"drift alerts: {len(drift_alerts)}")
    for a in drift_alerts:
        print(format_alert(a))
    return {
        "windows": [{"seq": w.seq, "start": w.start, "end": w.end, "n": w.n_events,
                     "drift_score": w.drift_score, "firing": [list(f) for f in w.firing]}
                    for w in run.windows],
        "alerts": [a.as_dict() for a in drift_alerts],
    }  # fmt: skip

"""`radwatch run`: the pilot deployment in one process (monitor/pilot/run.py).

An ingest worker, the detection passes (drift, performance, audit checkpoints), /metrics and
the Alertmanager webhook; SIGTERM or SIGINT stops them in order. Exit 1 when the ingest
worker gave up (the supervisor restarts it).
"""

from __future__ import annotations

import argparse

from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    from monitor.commands.metrics_cmd import add_server_options

    parser = sub.add_parser(
        "run",
        help="collect + detect + metrics in one process (the pilot deployment)",
        description="One process for a pilot: an ingest worker (as radwatch collect), detection, "
        "/metrics and the Alertmanager webhook. Example: radwatch run --detect-interval 60",
    )
    parser.add_argument("--detect-interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between detection passes (default 60)")  # fmt: skip
    parser.add_argument("--performance-window", type=int, default=500, metavar="N",
                        help="inferences per performance window (default 500)")  # fmt: skip
    parser.add_argument("--performance-reference", type=int, default=None, metavar="N",
                        help="the model's first N inferences are the performance reference "
                        "(default: the model's frozen drift reference; the first 1000 while "
                        "none is frozen)")  # fmt: skip
    parser.add_argument("--checkpoint-interval", type=float, default=3600.0, metavar="SECONDS",
                        help="seal a signed audit checkpoint when the last one is older than "
                        "this and rows were added (default 3600)")  # fmt: skip
    parser.add_argument("--parked-interval", type=float, default=900.0, metavar="SECONDS",
                        help="fetch the images parked during a PACS outage again this often, "
                        "as radwatch embed --parked does (default 900)")  # fmt: skip
    add_server_options(parser)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.pilot.run import run_pilot

    if args.detect_interval <= 0:
        raise UsageError("--detect-interval must be positive")
    if args.performance_window <= 0 or (
        args.performance_reference is not None and args.performance_reference <= 0
    ):
        raise UsageError("--performance-window and --performance-reference must be positive")
    if args.checkpoint_interval <= 0 or args.parked_interval <= 0:
        raise UsageError("--checkpoint-interval and --parked-interval must be positive")
    result = run_pilot(
        settings, detect_interval=args.detect_interval,
        performance_window=args.performance_window,
        performance_reference=args.performance_reference,
        checkpoint_interval=args.checkpoint_interval, parked_interval=args.parked_interval,
        addr=args.addr,
        lag_interval=args.lag_interval, webhook=not args.no_webhook,
    )  # fmt: skip
    print(f"stopped: {result.inferences} inferences, {result.labels} labels, "
          f"{result.dead_letters} dead letters, {result.detection_passes} detection passes",
          flush=True)  # fmt: skip
    return 0 if result.ok else 1

"""`radwatch performance [--model M] [--json]`: realised vs estimated performance, per window.

The command edge of monitor/performance/watch.py: runs the performance watch (label corrections,
evaluation, storage, alerts) and prints the label-free estimate beside the realised value,
with intervals, label coverage and latency, subgroup gaps and reliability warnings. The
reference is the model's frozen drift reference unless `--reference-size` asks for a size.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from monitor.commands.arguments import positive_float, positive_int
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "performance",
        help="realised and label-free estimated performance, per window and subgroup",
        description="Example: radwatch performance --model cxr-nodule --window 500 --json",
    )
    parser.add_argument("--model", help="one model (default: every model with inferences)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--window", type=positive_int, default=500, help="inferences per window")
    parser.add_argument("--period", choices=("day", "week"), help="calendar windows instead")
    parser.add_argument("--reference-size", type=positive_int, metavar="N",
                        help="the model's first N inferences form the reference (default: the "
                        "model's frozen drift reference, `radwatch reference build`; the first "
                        "1000 inferences when it has none)")  # fmt: skip
    parser.add_argument("--alpha", type=positive_float, default=None,
                        help="per-window false-alarm rate of the degradation tests (default: "
                        "the false-alarm budget's, `radwatch budget show`)")  # fmt: skip
    parser.add_argument("--no-alerts", action="store_true",
                        help="evaluate and store, but do not feed the alert lifecycle")  # fmt: skip
    parser.set_defaults(handler=_performance)


def _performance(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.performance.evaluation import PerformanceConfig, PerformanceWatchError
    from monitor.performance.summary import format_report, report_dict
    from monitor.performance.watch import run
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    if args.window < 10 or (args.reference_size is not None and args.reference_size < 10):
        raise UsageError("--window and --reference-size must be at least 10")
    if args.alpha is not None and not args.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    # It stores evaluations and feeds alerts, but only about data already collected: like
    # the read-only commands it starts nothing and migrates nothing.
    endpoints = resolve_endpoints(settings, read_only=True, broker=False)
    config = PerformanceConfig(window=args.window, period=args.period,
                               reference_size=args.reference_size)  # fmt: skip
    if args.alpha is not None:  # asked for: this α, the default persistence, no budget
        config = dataclasses.replace(config, alpha=args.alpha, budgeted=False)
    with db.connect(endpoints.database_url) as conn:
        try:
            reports = run(
                conn,
                model=args.model,
                config=config,
                alert=not args.no_alerts,
                fallback=settings.false_alarm_budget(),
            )
        except PerformanceWatchError as exc:
            raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps([report_dict(r) for r in reports], indent=2, default=str))
    else:
        for report in reports:
            print(format_report(report))
        if not reports:
            print("no model has enough inferences for a performance reference yet")
    return 0

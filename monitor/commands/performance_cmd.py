"""`radwatch performance [--model M] [--record] [--json]`: realised vs estimated performance.

The command edge of monitor/performance/watch.py: prints the label-free estimate beside the
realised value per window, with intervals, label coverage and latency, subgroup gaps and
reliability warnings. Read-only by default (`watch.assess`: nothing stored, audited or
alerted, so looking never changes what the QA team sees); `--record` runs the watch itself
(`watch.run`: label corrections, storage, audit, alerts), as `radwatch run` does every pass.
The reference is the model's frozen drift reference unless `--reference-size` asks for a size.
"""

from __future__ import annotations

import argparse
import dataclasses

from monitor.commands.arguments import positive_float, positive_int
from monitor.commands.output import add_json_flag, emit
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "performance",
        help="realised and label-free estimated performance, per window and subgroup",
        description="Read-only unless --record. Example: radwatch performance --model "
        "cxr-nodule --window 500; radwatch performance --record (store results, open alerts)",
    )
    parser.add_argument("--model", help="one model (default: every model with inferences)")
    add_json_flag(parser)
    parser.add_argument("--record", action="store_true",
                        help="store the results, audit them and feed the alert lifecycle (as "
                        "`radwatch run` does); without it nothing is written")  # fmt: skip
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
                        help="with --record: store, but do not feed the alert lifecycle")  # fmt: skip
    parser.set_defaults(handler=_performance)


def _performance(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.performance.evaluation import PerformanceConfig, PerformanceWatchError
    from monitor.performance.summary import format_report, report_dict
    from monitor.performance.watch import assess, run
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    if args.window < 10 or (args.reference_size is not None and args.reference_size < 10):
        raise UsageError("--window and --reference-size must be at least 10")
    if args.alpha is not None and not args.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    # With --record it stores evaluations and feeds alerts, but only about data already
    # collected: like the read-only commands it starts nothing and migrates nothing.
    endpoints = resolve_endpoints(settings, read_only=True, broker=False)
    config = PerformanceConfig(window=args.window, period=args.period,
                               reference_size=args.reference_size)  # fmt: skip
    if args.alpha is not None:  # asked for: this α, the default persistence, no budget
        config = dataclasses.replace(config, alpha=args.alpha, budgeted=False)
    with db.connect(endpoints.database_url) as conn:
        try:
            if args.record:
                reports = run(conn, model=args.model, config=config, alert=not args.no_alerts,
                              fallback=settings.false_alarm_budget())  # fmt: skip
            else:
                reports = assess(conn, model=args.model, config=config,
                                 fallback=settings.false_alarm_budget())  # fmt: skip
        except PerformanceWatchError as exc:
            raise UsageError(str(exc)) from exc
    said = (
        "recorded: results stored and audited" + (", alerts fed" if not args.no_alerts else "")
        if args.record
        else "read-only: nothing stored or alerted (--record records)"
    )
    emit([report_dict(r) for r in reports], args.json, indent=2,
         render=lambda _: [*(format_report(r) for r in reports or ()),
                           *([] if reports else ["no model has enough inferences for a "
                                                 "performance reference yet"]), said])  # fmt: skip
    return 0

"""`radwatch collect`: run one ingest worker of the consumer group (monitor/ingest/worker.py)."""

from __future__ import annotations

import argparse

from monitor.commands.output import add_json_flag, emit, key_values
from monitor.commands.progress import tracked
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "collect",
        help="consume inferences and labels into PostgreSQL",
        description="One worker of the consumer group. Example: radwatch collect --until-idle 10",
    )
    parser.add_argument("--until-idle", type=float, metavar="SECONDS",
                        help="exit 0 after this many seconds without new records")  # fmt: skip
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="also serve this worker's ingest instruments (events, batch "
                        "latency, dead letters) on /metrics here")  # fmt: skip
    add_json_flag(parser)
    parser.set_defaults(handler=_collect)


def _collect(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.ingest.wiring import build_worker
    from monitor.pilot.serving import serve_process_metrics

    worker = build_worker(settings)
    worker.install_signal_handlers()
    # Protected like `radwatch metrics` when RADWATCH_METRICS_WEB_CONFIG is set.
    server = serve_process_metrics(settings, args.metrics_addr) if args.metrics_addr else None
    try:
        # The worker's own counters, read by the progress thread (no hook in the worker). As
        # a service (no --until-idle) it logs once a minute, not every 10 s.
        with tracked("collect", unit="inferences", interval_s=None if args.until_idle else 60.0,
                     poll=lambda t: t.update(worker.stats.inferences, labels=worker.stats.labels,
                                             dead_letters=worker.stats.dead_letters)):  # fmt: skip
            stats = worker.run(until_idle=args.until_idle)
    finally:
        if server is not None:
            server.stop()
    doc = {"inferences": stats.inferences, "labels": stats.labels,
           "dead_letters": stats.dead_letters, "batches": stats.batches}  # fmt: skip
    emit(doc, args.json, lambda d: key_values(d.items(), title="collected"))
    return 0

"""`radwatch collect`: run ingest workers of the consumer group (monitor/ingest/worker.py), one
in this process or several as child processes (monitor/ingest/processes.py)."""

from __future__ import annotations

import argparse

from monitor.commands.output import add_json_flag, emit, key_values
from monitor.commands.progress import tracked
from monitor.config import Settings
from monitor.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "collect",
        help="consume inferences and labels into PostgreSQL",
        description="Workers of the consumer group (one by default). "
        "Example: radwatch collect --until-idle 10 --processes 2",
    )
    parser.add_argument("--until-idle", type=float, metavar="SECONDS",
                        help="exit 0 after this many seconds without new records")  # fmt: skip
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="also serve this worker's ingest instruments (events, batch "
                        "latency, dead letters) on /metrics here")  # fmt: skip
    parser.add_argument("--processes", type=int, metavar="N",
                        help="worker processes in the group (default RADWATCH_COLLECT_PROCESSES, "
                        "1); one per core on a box with cores to spare")  # fmt: skip
    add_json_flag(parser)
    parser.set_defaults(handler=_collect)


def _collect(args: argparse.Namespace, settings: Settings) -> int:
    processes = settings.collect_processes if args.processes is None else args.processes
    if not 1 <= processes <= 64:
        raise UsageError(f"--processes must be between 1 and 64, not {processes}")
    if processes > 1:
        return _collect_in_processes(args, settings, processes)
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


def _collect_in_processes(args: argparse.Namespace, settings: Settings, processes: int) -> int:
    from monitor.ingest.processes import child_command, run_group

    if args.metrics_addr:
        raise UsageError("--metrics-addr serves one process's instruments: use it with "
                         "--processes 1 (radwatch metrics serves every process's counters)")  # fmt: skip
    settings.key_bytes()  # a generated pseudonym key is created here, once, not by N children
    global_args = [*(["--config", args.config] if args.config else []),
                   *(["-v"] if args.verbose else [])]  # fmt: skip
    collect_args = ["--until-idle", str(args.until_idle)] if args.until_idle is not None else []
    group = run_group(child_command(global_args, collect_args), processes)
    doc = {**group.counts, "processes": processes, "failed_processes": group.failed}
    emit(doc, args.json, lambda d: key_values(d.items(), title="collected"))
    return group.exit_code

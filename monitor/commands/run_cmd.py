"""`radwatch run`: the pilot deployment — collect + detect + metrics + webhook in one process.

The collector runs in the main thread (it owns the signal handlers); detection, the
performance watch and the sealing of signed audit checkpoints (when --checkpoint-interval has
passed since the last one) run on a scheduler thread every --detect-interval seconds; /metrics
and Alertmanager's webhook are served on RADWATCH_METRICS_ADDR. SIGTERM or SIGINT finishes the
current batch and the current detection pass, seals a last checkpoint, then everything stops
in order. Detection is not optional: a part that cannot be imported stops the start.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType

from monitor.config import Settings

log = logging.getLogger(__name__)

COMPONENT = "radwatch-run"


def register(sub: argparse._SubParsersAction) -> None:
    from monitor.commands.metrics_cmd import add_server_options

    parser = sub.add_parser(
        "run",
        help="collect + detect + metrics in one process (the pilot deployment)",
        description="One process for a pilot: a collector worker, the detection scheduler, "
        "/metrics and the Alertmanager webhook. Example: radwatch run --detect-interval 60",
    )
    parser.add_argument("--detect-interval", type=float, default=60.0, metavar="SECONDS",
                        help="seconds between detection passes (default 60)")  # fmt: skip
    parser.add_argument("--performance-window", type=int, default=500, metavar="N",
                        help="inferences per performance window (default 500)")  # fmt: skip
    parser.add_argument("--performance-reference", type=int, default=1000, metavar="N",
                        help="the model's first N inferences are the performance reference "
                        "(default 1000)")  # fmt: skip
    parser.add_argument("--checkpoint-interval", type=float, default=3600.0, metavar="SECONDS",
                        help="seal a signed audit checkpoint when the last one is older than "
                        "this and rows were added (default 3600)")  # fmt: skip
    add_server_options(parser)
    parser.set_defaults(handler=_run)


Job = tuple[str, Callable[[], object]]


# The scheduled parts of radwatch. Imported plainly at start: a build that cannot load one
# of them must not run as if it had no drift detection (issue 13: no swallowed import).
REQUIRED = (("monitor.drift.scheduler", "drift detection"),
            ("monitor.performance.watch", "the performance watch"))  # fmt: skip


class StartError(RuntimeError):
    """A required part of radwatch cannot be loaded: `radwatch run` does not start."""


def load_required() -> dict[str, object]:
    """Import every scheduled part or fail with one clear line naming the part and cause."""
    loaded: dict[str, object] = {}
    for module, what in REQUIRED:
        try:
            loaded[module] = importlib.import_module(module)
        except ImportError as exc:
            raise StartError(
                f"{what} ({module}) cannot be imported ({type(exc).__name__}: {exc}); "
                "radwatch run does not start without it: reinstall radwatch"
            ) from exc
    return loaded


def detection_jobs(
    settings: Settings,
    database_url: str,
    *,
    performance_window: int = 500,
    performance_reference: int = 1000,
    checkpoint_interval: float | None = None,
) -> tuple[list[Job], list[Callable[[], None]]]:
    """The passes the scheduler runs — drift detection (monitor.drift.scheduler), the performance
    watch (monitor.performance.watch) and, with `checkpoint_interval`, sealing a signed audit
    checkpoint when due — and what to call when the scheduler thread ends."""
    from monitor.audit import checkpoint
    from monitor.drift import scheduler
    from monitor.performance import watch
    from monitor.store import db

    jobs: list[Job] = []
    cleanups: list[Callable[[], None]] = []
    detection = scheduler.Scheduler(database_url, scheduler.DetectionConfig(),
                                    actor=f"{settings.actor}-detect")  # fmt: skip

    def drift_pass() -> object:
        # One active scheduler per deployment (advisory lock): stand by while another
        # process (a `radwatch detect` elsewhere) holds it; retry next interval.
        if not detection.acquire():
            log.info("another detection scheduler is active; standing by")
            return None
        return detection.run_once()

    jobs.append(("drift detection", drift_pass))
    cleanups.append(detection.release)
    config = watch.PerformanceConfig(window=performance_window,
                                           reference_size=performance_reference)  # fmt: skip

    def performance_pass() -> object:
        with db.connect(database_url) as conn:
            return watch.run(conn, config=config)

    jobs.append(("performance watch", performance_pass))
    if checkpoint_interval is not None:
        every = checkpoint_interval

        def checkpoint_pass() -> object:
            # Cheap when not due (one query); the key is created on the first seal.
            with db.connect(database_url) as conn:
                sealed = checkpoint.checkpoint_if_due(conn, settings, every_s=every)
            if sealed is not None:
                log.info("audit checkpoint %d sealed (rows %d-%d)", sealed.id, sealed.first_seq,
                         sealed.last_seq)  # fmt: skip
            return sealed

        jobs.append(("audit checkpoint", checkpoint_pass))
    return jobs, cleanups


class Scheduler:
    """Runs every job now and then every `interval` seconds until stopped."""

    def __init__(self, jobs: list[Job], interval: float,
                 cleanups: list[Callable[[], None]] | None = None) -> None:  # fmt: skip
        self._jobs = jobs
        self._cleanups = cleanups or []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="detection", daemon=True)
        self.passes = 0

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=300)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name, job in self._jobs:
                if self._stop.is_set():
                    break
                try:
                    job()
                except Exception:
                    # One failed pass is logged with its cause and retried next interval; the
                    # collector and /metrics keep running (an outage of one part is visible
                    # as stale radwatch_drift_last_evaluated_timestamp_seconds).
                    log.exception("%s pass failed; retrying in %.0fs", name, self._interval)
            self.passes += 1
            self._stop.wait(self._interval)
        # The advisory lock lives on a connection this thread opened: release it here.
        for cleanup in self._cleanups:
            cleanup()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.audit import checkpoint, trail
    from monitor.commands.collect_cmd import build_collector
    from monitor.commands.metrics_cmd import start_metrics
    from monitor.errors import UsageError
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    if args.detect_interval <= 0:
        raise UsageError("--detect-interval must be positive")
    if args.performance_window <= 0 or args.performance_reference <= 0:
        raise UsageError("--performance-window and --performance-reference must be positive")
    if args.checkpoint_interval <= 0:
        raise UsageError("--checkpoint-interval must be positive")
    try:
        load_required()  # before any service starts: a broken build does not half-run
    except StartError as exc:
        log.critical("%s", exc)
        raise
    # Handlers first: a SIGTERM during start-up (imports, embedded services) still stops cleanly.
    stopping = threading.Event()
    collectors: list = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for c in collectors:
            c.request_stop(signum, frame)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    endpoints = resolve_endpoints(settings)
    collector = build_collector(settings)
    collectors.append(collector)
    if stopping.is_set():
        collector.request_stop()
    running = start_metrics(args, settings, endpoints)
    jobs, cleanups = detection_jobs(
        settings, endpoints.database_url, performance_window=args.performance_window,
        performance_reference=args.performance_reference,
        checkpoint_interval=args.checkpoint_interval,
    )  # fmt: skip
    paths = checkpoint.key_paths(settings)
    log.info("audit checkpoints sealed every %.0fs when rows were added; signing key %s "
             "(public %s), checkpoints also appended to %s: keep the key off the database host",
             args.checkpoint_interval, paths.private, paths.public, paths.checkpoints)  # fmt: skip
    scheduler = Scheduler(jobs, args.detect_interval, cleanups).start()
    with db.connect(endpoints.database_url) as conn:
        trail.record_start(conn, component=COMPONENT, config=settings, actor=settings.actor)
        conn.commit()
    outcome, reason = "success", "signal"
    try:
        stats = collector.run()
        if not stopping.is_set():
            # The collector gave up (database unreachable past its retries): exit non-zero so
            # the supervisor restarts us; the batch in flight is replayed from Kafka.
            outcome, reason = "failure", "collector stopped"
    finally:
        scheduler.stop()
        for thing in running:
            (thing.stop if hasattr(thing, "stop") else thing.close)()
    with db.connect(endpoints.database_url) as conn:
        trail.record_stop(conn, component=COMPONENT, actor=settings.actor, outcome=outcome,
                          reason=reason, detail={"inferences": stats.inferences,
                                                 "labels": stats.labels,
                                                 "dead_letters": stats.dead_letters,
                                                 "detection_passes": scheduler.passes})  # fmt: skip
        conn.commit()
        # A last seal at shutdown covers the rows of this run, the stop row included.
        try:
            checkpoint.create_checkpoint(conn, settings)
        except (trail.AuditError, OSError) as exc:
            log.error("final audit checkpoint not sealed (%s)", type(exc).__name__)
    print(
        f"stopped: {stats.inferences} inferences, {stats.labels} labels, "
        f"{stats.dead_letters} dead letters, {scheduler.passes} detection passes",
        flush=True,
    )
    return 0 if outcome == "success" else 1

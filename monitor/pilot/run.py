"""`radwatch run`: the pilot deployment — ingest + detection + metrics + webhook in one process.

The whole data flow in one process: the ingest worker runs in the main thread (it owns the
signal handlers); drift detection (monitor/drift/scheduler.py), the performance watch
(monitor/performance/watch.py) and the sealing of signed audit checkpoints (when
`checkpoint_interval` has passed since the last one) run on a `PassLoop` thread every
`detect_interval` seconds, and images parked during a PACS outage are fetched again every
`parked_interval` (monitor/ingest/backfill.retry_parked); /metrics and Alertmanager's webhook are served on
RADWATCH_METRICS_ADDR (monitor/pilot/serving.py). SIGTERM or SIGINT finishes the current
batch and the current pass, seals a last checkpoint, then everything stops in order.
Detection is not optional: a part that cannot be imported stops the start.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from monitor.config import Settings
from monitor.errors import RadwatchError

log = logging.getLogger(__name__)

COMPONENT = "radwatch-run"

Job = tuple[str, Callable[[], object]]

# The scheduled parts of radwatch. Imported plainly at start: a build that cannot load one
# of them must not run as if it had no drift detection (issue 13: no swallowed import).
REQUIRED = (("monitor.drift.scheduler", "drift detection"),
            ("monitor.performance.watch", "the performance watch"))  # fmt: skip


class StartError(RadwatchError, RuntimeError):
    """A required part of radwatch cannot be loaded: `radwatch run` does not start."""


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended: `ok` False when the ingest worker gave up (the supervisor restarts)."""

    ok: bool
    inferences: int
    labels: int
    dead_letters: int
    detection_passes: int


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
    performance_reference: int | None = None,
    checkpoint_interval: float | None = None,
    parked_interval: float | None = None,
) -> tuple[list[Job], list[Callable[[], None]]]:
    """The passes the loop runs — drift detection (monitor.drift.scheduler), the performance
    watch (monitor.performance.watch), with `checkpoint_interval` sealing a signed audit
    checkpoint when due, and with `parked_interval` retrying the images parked during a PACS
    outage when due — and what to call when the loop's thread ends."""
    from monitor.audit import checkpoint
    from monitor.drift import scheduler
    from monitor.performance import watch
    from monitor.performance.evaluation import PerformanceConfig
    from monitor.store import db

    jobs: list[Job] = []
    cleanups: list[Callable[[], None]] = []
    detection = scheduler.Scheduler(
        database_url, scheduler.DetectionConfig(budget=settings.false_alarm_budget()),
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
    # None: each model's frozen drift reference (the one drift detection uses), else its
    # first 1000 inferences; a number: its first N.
    config = PerformanceConfig(window=performance_window, reference_size=performance_reference)

    def performance_pass() -> object:
        with db.connect(database_url) as conn:
            return watch.run(conn, config=config, fallback=settings.false_alarm_budget())

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
    if parked_interval is not None:
        jobs.append(("parked images", parked_job(settings, database_url, parked_interval)))
    return jobs, cleanups


def parked_job(settings: Settings, database_url: str, every: float) -> Callable[[], object]:
    """A pass that retries the parked images when `every` seconds have passed since the last
    retry (the first pass retries at once: a restart after an outage fetches what waits)."""
    from monitor.ingest.backfill import retry_parked

    due = [time.monotonic()]

    def parked_pass() -> object:
        now = time.monotonic()
        if now < due[0]:
            return None
        due[0] = now + every
        retry = retry_parked(settings, database_url)
        if retry.result is not None:
            log.info("parked images: %d embedded, %d failed", retry.result.embedded,
                     retry.result.failed)  # fmt: skip
        return retry

    return parked_pass


class PassLoop:
    """Runs every job now and then every `interval` seconds on its own thread until stopped.

    Not the detection `Scheduler` (monitor/drift/scheduler.py): that is one of its jobs.
    """

    def __init__(self, jobs: list[Job], interval: float,
                 cleanups: list[Callable[[], None]] | None = None) -> None:  # fmt: skip
        self._jobs = jobs
        self._cleanups = cleanups or []
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="detection", daemon=True)
        self.passes = 0

    def start(self) -> PassLoop:
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
                    # ingest worker and /metrics keep running (an outage of one part is visible
                    # as stale radwatch_drift_last_evaluated_timestamp_seconds).
                    log.exception("%s pass failed; retrying in %.0fs", name, self._interval)
            self.passes += 1
            self._stop.wait(self._interval)
        # The advisory lock lives on a connection this thread opened: release it here.
        for cleanup in self._cleanups:
            cleanup()


def run_pilot(
    settings: Settings,
    *,
    detect_interval: float = 60.0,
    performance_window: int = 500,
    performance_reference: int | None = None,
    checkpoint_interval: float = 3600.0,
    parked_interval: float = 900.0,
    addr: str | None = None,
    lag_interval: float = 15.0,
    webhook: bool = True,
) -> RunOutcome:
    """Run until SIGTERM/SIGINT (or until the ingest worker gives up); returns how it ended.

    Raises StartError, before anything starts, when a scheduled part cannot be imported.
    """
    try:
        load_required()  # before any service starts: a broken build does not half-run
    except StartError as exc:
        log.critical("%s", exc)
        raise
    from monitor.audit import checkpoint, trail
    from monitor.ingest.wiring import build_worker
    from monitor.pilot.serving import start_metrics, stop_all
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    # Handlers first: a SIGTERM during start-up (imports, embedded services) still stops cleanly.
    stopping = threading.Event()
    workers: list = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        for w in workers:
            w.request_stop(signum, frame)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    endpoints = resolve_endpoints(settings)
    worker = build_worker(settings)
    workers.append(worker)
    if stopping.is_set():
        worker.request_stop()
    running = start_metrics(settings, endpoints, addr=addr, lag_interval=lag_interval,
                            webhook=webhook)  # fmt: skip
    jobs, cleanups = detection_jobs(
        settings, endpoints.database_url, performance_window=performance_window,
        performance_reference=performance_reference, checkpoint_interval=checkpoint_interval,
        parked_interval=parked_interval,
    )  # fmt: skip
    paths = checkpoint.key_paths(settings)
    log.info("audit checkpoints sealed every %.0fs when rows were added; signing key %s "
             "(public %s), checkpoints also appended to %s: keep the key off the database host",
             checkpoint_interval, paths.private, paths.public, paths.checkpoints)  # fmt: skip
    loop = PassLoop(jobs, detect_interval, cleanups).start()
    with db.connect(endpoints.database_url) as conn:
        trail.record_start(conn, component=COMPONENT, config=settings, actor=settings.actor)
        conn.commit()
    outcome, reason = "success", "signal"
    try:
        stats = worker.run()
        if not stopping.is_set():
            # The worker gave up (database unreachable past its retries): exit non-zero so
            # the supervisor restarts us; the batch in flight is replayed from Kafka.
            outcome, reason = "failure", "collector stopped"
    finally:
        loop.stop()
        stop_all(running)
    with db.connect(endpoints.database_url) as conn:
        trail.record_stop(conn, component=COMPONENT, actor=settings.actor, outcome=outcome,
                          reason=reason, detail={"inferences": stats.inferences,
                                                 "labels": stats.labels,
                                                 "dead_letters": stats.dead_letters,
                                                 "detection_passes": loop.passes})  # fmt: skip
        conn.commit()
        # A last seal at shutdown covers the rows of this run, the stop row included.
        try:
            checkpoint.create_checkpoint(conn, settings)
        except (trail.AuditError, OSError) as exc:
            log.error("final audit checkpoint not sealed (%s)", type(exc).__name__)
    return RunOutcome(ok=outcome == "success", inferences=stats.inferences, labels=stats.labels,
                      dead_letters=stats.dead_letters, detection_passes=loop.passes)  # fmt: skip

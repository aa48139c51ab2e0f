"""Scale-out fault tolerance with several `radwatch collect` workers (real broker and PostgreSQL).

Two workers in one consumer group on a 4-partition topic: one is SIGKILLed mid-stream and
restarted, PostgreSQL is restarted under them, and a worker started before its broker
exists waits for it. Two `radwatch detect` schedulers: the one holding the advisory lock is
SIGKILLed and the standby takes over. Every event must be stored exactly once and the workers must recover
by themselves. (The single-worker cases live in test_collector_faults.py.)
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import psutil
import psycopg
from conftest import REPO, produce, radwatch_cmd, settings_env
from support import wait_for as poll

from monitor.config import Settings
from monitor.services import embedded as services

# kafka-python logs each assignment at INFO under this logger; the CLI quiets the "kafka"
# parent to WARNING, and a child logger's own level wins, so the workers below run the real
# CLI with only that one logger turned up to tell us which partitions each worker holds.
_WORKER = (
    "import logging, sys; "
    "logging.getLogger('kafka.coordinator.consumer').setLevel(logging.INFO); "
    "from monitor.cli import main; sys.exit(main(sys.argv[1:]))"
)
_ASSIGNED = re.compile(r"Setting newly assigned partitions \{(.*?)\} for group")
_PARTITION = re.compile(r"TopicPartition\(topic='([^']+)', partition=(\d+)\)")


class Worker:
    """One `radwatch collect` subprocess, its stderr in a file we can read while it runs."""

    def __init__(self, settings: Settings, log: Path, *args: str) -> None:
        self.settings = settings
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER, "collect", "--json", *args],
                env=settings_env(settings),
                cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
            )  # fmt: skip

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def partitions(self) -> set[int] | None:
        """Inference-topic partitions of the latest assignment (None before the first)."""
        found = _ASSIGNED.findall(self.text())
        if not found:
            return None
        return {int(p) for t, p in _PARTITION.findall(found[-1])
                if t == self.settings.inference_topic}  # fmt: skip

    def stop(self, timeout: float = 60) -> dict[str, int]:
        """SIGTERM: finish the batch, commit, leave the group, print the stats line."""
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, (
            f"worker exited {self.proc.returncode}:\n{self.text()[-3000:]}"
        )
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def small_events(n: int, tag: str) -> tuple[list[bytes], list[bytes], set[str]]:
    values, keys, ids = [], [], set()
    for i in range(n):
        study, event_id = f"2.25.{i}", f"{tag}-{i}"
        values.append(json.dumps({
            "schema": "radwatch.inference.v1", "event_id": event_id,
            "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "cxr-nodule"},
            "study": {"study_uid": study}, "prediction": {"scores": {"nodule": (i % 100) / 100}},
        }).encode())  # fmt: skip
        keys.append(study.encode())
        ids.add(event_id)
    return values, keys, ids


def stored(url: str) -> int:
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM inferences").fetchone()
        assert row is not None
        return int(row[0])


def stored_ids(url: str) -> tuple[int, set[str], int]:
    """(rows, distinct event ids, dead letters)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT event_id FROM inferences").fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert dead is not None
    return len(rows), {r[0] for r in rows}, int(dead[0])


# The services' retry line for PostgreSQL (monitor.store.db.with_retry): what failed, where, why,
# and the next delay; the wording of the reason is db.describe's.
PG_RETRY = re.compile(r"PostgreSQL (?:unavailable: |at ).*; retrying in \d")


def stored_or_zero(url: str) -> int:
    try:
        return stored(url)
    except psycopg.OperationalError:
        return -1  # PostgreSQL is down right now


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             workers: tuple[Worker, ...] = ()) -> float:  # fmt: skip
    """Poll until true; returns the seconds it took. A worker dying meanwhile fails at once."""

    def alive() -> None:
        for w in workers:
            if w.proc.poll() is not None:
                raise AssertionError(f"worker exited {w.proc.returncode} while waiting for "
                                     f"{what}:\n{w.text()[-3000:]}")  # fmt: skip

    return poll(predicate, timeout, what, check=alive,
                details=lambda: "\n".join(w.text()[-1500:] for w in workers))  # fmt: skip


def test_two_workers_sigkill_one_midway_and_restart_store_every_event_once(settings, tmp_path):
    # 50,000 small events on 4 partitions, produced while the two workers consume them.
    total = 50_000
    values, keys, ids = small_events(total, uuid.uuid4().hex[:8])
    a = Worker(settings, tmp_path / "a.log")
    b = Worker(settings, tmp_path / "b.log")
    restarted: Worker | None = None
    try:
        produce(settings, settings.inference_topic, values[: total // 2], keys[: total // 2])

        # Both members hold half of the partitions before anything is killed.
        def split() -> bool:
            pa, pb = a.partitions(), b.partitions()
            return bool(pa and pb and len(pa) == 2 and len(pb) == 2 and not pa & pb)

        wait_for(split, 60, "the group to split 4 partitions 2/2", (a, b))
        wait_for(lambda: stored(settings.database_url) >= 5_000, 90, "5,000 stored", (a, b))
        killed_at = stored(settings.database_url)
        a_partitions = a.partitions()
        a.kill()  # SIGKILL: no LeaveGroup, no commit, a batch possibly half-written

        # The survivor takes the dead member's partitions once its session times out
        # (session_timeout_ms=6000, DESIGN.md §7): bounded at 30 s here.
        took = wait_for(lambda: b.partitions() == {0, 1, 2, 3}, 30,
                        "the survivor to take all 4 partitions", (b,))  # fmt: skip
        produce(settings, settings.inference_topic, values[total // 2 :], keys[total // 2 :])
        wait_for(lambda: stored(settings.database_url) >= 35_000, 120, "35,000 stored", (b,))

        # The killed worker comes back: the group splits again and both finish the stream.
        restarted = Worker(settings, tmp_path / "a2.log")
        wait_for(lambda: bool(restarted.partitions()) and len(b.partitions() or ()) < 4, 60,
                 "the restarted worker to rejoin", (b, restarted))  # fmt: skip
        wait_for(lambda: stored(settings.database_url) >= total, 150, "all events stored",
                 (b, restarted))  # fmt: skip
        stats_b, stats_a2 = b.stop(), restarted.stop()
    finally:
        for w in (a, b, restarted):
            if w is not None:
                w.kill()

    rows, distinct, dead = stored_ids(settings.database_url)
    assert rows == total and distinct == ids, (rows, len(distinct ^ ids))
    assert dead == 0
    assert a_partitions and len(a_partitions) == 2, a_partitions
    assert 5_000 <= killed_at < total, killed_at
    assert took < 30
    # Replays after the kill are absorbed by ON CONFLICT: new rows counted by the workers
    # never exceed what is stored, and the two survivors did real work.
    assert stats_b["inferences"] > 0 and stats_a2["inferences"] >= 0
    assert stats_b["inferences"] + stats_a2["inferences"] <= total


def test_postgres_restart_mid_stream_workers_recover_without_loss(
    settings, tmp_path, embedded, embedded_data_dir
):
    total = 10_000
    values, keys, ids = small_events(total, uuid.uuid4().hex[:8])
    pg = services.EmbeddedPostgres(embedded_data_dir)
    port = embedded.pg_port
    assert port is not None
    produce(settings, settings.inference_topic, values, keys)
    workers = (Worker(settings, tmp_path / "a.log"), Worker(settings, tmp_path / "b.log"))
    try:
        wait_for(lambda: all(w.partitions() for w in workers), 60, "both workers assigned",
                 workers)  # fmt: skip
        wait_for(lambda: stored(settings.database_url) >= 2_000, 90, "2,000 stored", workers)
        try:
            # A crash, not a shutdown: no checkpoint, connections cut mid-transaction.
            pg.stop("immediate")
            down_at = time.monotonic()
            # More records during the outage, on every partition: a worker that had already
            # drained its share (an idle worker touches no database) has work to fail on too.
            late_values, late_keys, late_ids = small_events(1_000, uuid.uuid4().hex[:8])
            produce(settings, settings.inference_topic, late_values, late_keys)
            total += len(late_ids)
            ids |= late_ids
            wait_for(lambda: all(PG_RETRY.search(w.text()) for w in workers), 60,
                     "both workers to notice the outage", workers)  # fmt: skip
            time.sleep(max(0.0, 4 - (time.monotonic() - down_at)))
        finally:
            pg.start(port)  # the shared server must be back whatever happened above
        # Nobody restarts the workers: they reconnect on their own and finish the stream.
        wait_for(lambda: stored_or_zero(settings.database_url) >= total, 120,
                 "all events stored after the restart", workers)  # fmt: skip
        for w in workers:
            w.stop()
    finally:
        for w in workers:
            w.kill()
    rows, distinct, dead = stored_ids(settings.database_url)
    assert rows == total and distinct == ids and dead == 0
    for w in workers:
        assert PG_RETRY.search(w.text()), w.text()[-2000:]


def test_broker_unreachable_at_start_retries_with_backoff_then_consumes(settings, tmp_path):
    port = services.free_port()
    late = replace(settings, kafka_bootstrap=f"127.0.0.1:{port}")
    worker = Worker(late, tmp_path / "w.log")
    broker_dir = tmp_path / "late-broker"
    broker_pid: int | None = None
    try:
        retry = re.compile(
            rf"Kafka at 127\.0\.0\.1:{port} unavailable \([^)]*\); retrying in ([\d.]+)s"
        )
        wait_for(lambda: len(retry.findall(worker.text())) >= 3, 60,
                 "three retry messages", (worker,))  # fmt: skip
        delays = [float(d) for d in retry.findall(worker.text())]
        # Exponential backoff: each wait at least as long as the one before, growing overall.
        assert delays == sorted(delays) and delays[-1] > delays[0], delays
        assert stored(settings.database_url) == 0

        broker_pid = services.EmbeddedBroker(broker_dir).start(port)
        values, keys, ids = small_events(500, uuid.uuid4().hex[:8])
        # The worker creates the topics when the broker appears; wait for its assignment.
        wait_for(lambda: bool(worker.partitions()), 90, "the worker to join the new broker",
                 (worker,))  # fmt: skip
        produce(late, late.inference_topic, values, keys)
        wait_for(lambda: stored(settings.database_url) >= 500, 60, "the events stored", (worker,))
        stats = worker.stop()
    finally:
        worker.kill()
        services.EmbeddedBroker.stop(broker_pid)
    assert stats["inferences"] == 500
    rows, distinct, _ = stored_ids(settings.database_url)
    assert rows == 500 and distinct == ids


def lock_holders(url: str) -> list[int]:
    """Client TCP ports of the sessions holding a session-level advisory lock in this database."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
               WHERE l.locktype = 'advisory' AND l.granted AND l.database = (
                   SELECT oid FROM pg_database WHERE datname = current_database())
                 AND a.pid <> pg_backend_pid()"""
        ).fetchall()
    return [int(r[0]) for r in rows if r[0] is not None]


def holds_lock(proc: subprocess.Popen, url: str) -> bool:
    """True when one of `proc`'s own PostgreSQL connections holds the advisory lock."""
    ports = set(lock_holders(url))
    try:
        mine = {c.laddr.port for c in psutil.Process(proc.pid).net_connections(kind="tcp")}
    except psutil.NoSuchProcess:
        return False
    return bool(ports & mine)


def test_detection_scheduler_killed_holding_the_lock_standby_takes_over(settings, tmp_path):
    url = settings.database_url
    env = settings_env(settings)

    def scheduler(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "ab") as err:
            return subprocess.Popen(radwatch_cmd("detect"), env=env, cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip

    first, second = scheduler("first"), scheduler("second")
    try:
        spawned = time.monotonic()
        # Both start together; whichever takes the lock first is the active one.
        while not (holders := [p for p in (first, second) if holds_lock(p, url)]):
            for proc in (first, second):
                assert proc.poll() is None, f"a scheduler exited {proc.returncode}"
            # Start-up (imports, migrations) is slow on a loaded 2-core machine; not timed.
            assert time.monotonic() - spawned < 300, "no scheduler took the lock"
            time.sleep(0.2)
        (active,) = holders
        standby = second if active is first else first
        # The standby started with the active one; 10 s more (two of its 5 s polls) and it
        # is surely past start-up, so the takeover below measures the lock hand-over.
        time.sleep(10)
        assert standby.poll() is None, f"the standby exited {standby.returncode}"
        assert holds_lock(active, url) and not holds_lock(standby, url)
        active.kill()  # SIGKILL: its session ends with the TCP connection, and the lock with it
        killed = time.monotonic()
        while not holds_lock(standby, url):
            assert standby.poll() is None, f"the standby exited {standby.returncode}"
            assert time.monotonic() - killed < 30, "the standby did not take over within 30 s"
            time.sleep(0.2)
        took = time.monotonic() - killed
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    assert took < 30

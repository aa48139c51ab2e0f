"""`radwatch collect --processes N`: N workers of one group under one command (monitor/ingest/
processes.py), against the real broker and PostgreSQL; and the supervisor's own rules (counts
added, the worst exit status, signals passed on) with plain child processes."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import psycopg
from conftest import produce, run_radwatch
from test_worker import enc, event

from monitor.audit.actions import AuditAction
from monitor.ingest.processes import run_group


def test_two_worker_processes_store_every_event_once(settings):
    produce(settings, settings.inference_topic, [enc(event(i)) for i in range(300)] + [b"oops"])
    result = run_radwatch(settings, "collect", "--processes", "2", "--until-idle", "4", "--json")
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["processes"] == 2 and summary["failed_processes"] == 0
    assert summary["inferences"] == 300 and summary["dead_letters"] == 1
    with psycopg.connect(settings.database_url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM inferences"
        ).fetchone()
        # Each child is a whole worker: its own lifecycle in the audit trail, its own share.
        stops = conn.execute(
            "SELECT detail FROM audit_events WHERE action = %s AND entity_id = 'collector'",
            (str(AuditAction.RADWATCH_STOP),),
        ).fetchall()
    assert stored == (300, 300)
    assert len(stops) == 2
    assert sum(detail["inferences"] for (detail,) in stops) == 300


def test_wrong_process_counts_and_a_shared_metrics_port_are_refused_on_one_line(settings):
    for args in (["--processes", "0"], ["--processes", "65"],
                 ["--processes", "2", "--metrics-addr", "127.0.0.1:0"]):  # fmt: skip
        result = run_radwatch(settings, "collect", *args, "--until-idle", "1", check=False,
                              timeout=60)  # fmt: skip
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "--processes" in result.stderr


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_counts_are_added_and_the_worst_status_is_the_commands():
    ok = run_group(_child('print(\'{"inferences": 3, "labels": 1, "batches": 2}\')'), 3)
    assert ok.exit_code == 0 and ok.failed == 0
    assert ok.counts == {"inferences": 9, "labels": 3, "dead_letters": 0, "batches": 6}
    # A child that died before its summary adds nothing and its status wins.
    failed = run_group(_child("import sys; print('not json'); sys.exit(2)"), 2)
    assert failed.exit_code == 2 and failed.failed == 2 and failed.counts["inferences"] == 0
    killed = run_group(_child("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), 1)
    assert killed.exit_code == 128 + signal.SIGKILL


def test_sigterm_is_passed_on_and_each_child_finishes():
    # Each child waits for SIGTERM, then writes its summary: as a worker finishing its batch.
    code = ("import signal, sys, time, json\n"
            "done = []\n"
            "signal.signal(signal.SIGTERM, lambda *a: done.append(1))\n"
            "print('ready', file=sys.stderr, flush=True)\n"
            "end = time.time() + 60\n"
            "while not done and time.time() < end: time.sleep(0.05)\n"
            "print(json.dumps({'inferences': 5 if done else 0}))\n")  # fmt: skip
    timer = threading.Timer(5.0, os.kill, (os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    timer.start()
    try:
        result = run_group(_child(code), 2)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 30
    assert result.exit_code == 0 and result.counts["inferences"] == 10
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler is back

"""`radwatch run` as the pilot runs it (a real subprocess on the real broker and PostgreSQL):
a part that cannot be imported stops the start with one clear line, and signed audit
checkpoints are sealed by the pass loop when due and once more at shutdown. The pass loop
and the start check also run in process (monitor/pilot/run.py)."""

from __future__ import annotations

import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import psycopg
import pytest
from conftest import REPO, radwatch_cmd, settings_env

from monitor.audit.checkpoint import key_paths, load_public_key, read_checkpoints
from monitor.pilot import run as run_module
from monitor.pilot.run import PassLoop, StartError
from monitor.services.embedded import free_port

# Loaded by the interpreter at start (PYTHONPATH): makes one module of radwatch unimportable,
# the way a broken install or a missing dependency of that module would.
BREAK_IMPORT = """
import importlib.abc, sys
class _Broken(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == {module!r}:
            raise ImportError("planted: a dependency of " + name + " is missing")
        return None
sys.meta_path.insert(0, _Broken())
"""


def test_a_part_that_cannot_be_imported_stops_the_start(settings, tmp_path):
    for module, what in (("monitor.drift.scheduler", "drift detection"),
                         ("monitor.performance.watch", "the performance watch")):  # fmt: skip
        shim = tmp_path / module
        shim.mkdir()
        (shim / "sitecustomize.py").write_text(BREAK_IMPORT.format(module=module))
        env = {**settings_env(settings), "PYTHONPATH": str(shim)}
        started = time.monotonic()
        result = subprocess.run(radwatch_cmd("run", "--addr", f"127.0.0.1:{free_port()}"),
                                env=env, cwd=REPO, capture_output=True, text=True,
                                timeout=120)  # fmt: skip
        assert result.returncode != 0, result.stderr[-2000:]
        assert f"{what} ({module}) cannot be imported" in result.stderr, result.stderr[-2000:]
        assert time.monotonic() - started < 60
    with psycopg.connect(settings.database_url) as conn:
        started_rows = conn.execute(
            "SELECT count(*) FROM audit_events WHERE action = 'radwatch.start'"
        ).fetchone()
    assert started_rows == (0,)  # nothing was started, nothing recorded as running


def test_run_seals_checkpoints_when_due_and_at_shutdown(settings, tmp_path):
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        run = subprocess.Popen(
            radwatch_cmd("run", "--addr", f"127.0.0.1:{free_port()}", "--detect-interval", "1",
                         "--checkpoint-interval", "2"),
            env=settings_env(settings), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            sealed = []
            while time.monotonic() < deadline and len(sealed) < 2:
                assert run.poll() is None, log_path.read_text()[-3000:]
                with psycopg.connect(settings.database_url) as conn:
                    sealed = read_checkpoints(conn)
                time.sleep(0.5)
            # Two seals while running: the first at start, the second once 2 s had passed
            # and rows (the first seal's own audit row at least) had been added.
            assert len(sealed) >= 2, log_path.read_text()[-3000:]
        finally:
            run.send_signal(signal.SIGTERM)
            code = run.wait(timeout=60)
    text = log_path.read_text()
    assert code == 0, text[-3000:]
    paths = key_paths(settings)
    assert f"signing key {paths.private}" in text
    assert stat.S_IMODE(Path(paths.private).stat().st_mode) == 0o600
    with psycopg.connect(settings.database_url) as conn:
        checkpoints = read_checkpoints(conn)
        stop = conn.execute("SELECT max(seq) FROM audit_events "
                            "WHERE action = 'radwatch.stop'").fetchone()  # fmt: skip
    assert stop is not None and stop[0] is not None
    assert checkpoints[-1].last_seq >= stop[0]  # the shutdown seal covers the stop row
    public = load_public_key(paths.public)
    assert all(c.signature_valid(public) for c in checkpoints)


# --- the pass loop, in process --------------------------------------------------------------


def test_the_pass_loop_survives_a_failing_pass_and_releases_on_stop(caplog):
    ran: list[str] = []
    released = threading.Event()
    second_round = threading.Event()

    def failing() -> object:
        ran.append("failing")
        raise RuntimeError("one bad pass")

    def counting() -> object:
        ran.append("counting")
        if ran.count("counting") >= 2:
            second_round.set()
        return None

    with caplog.at_level("ERROR", logger="monitor.pilot.run"):
        loop = PassLoop([("failing", failing), ("counting", counting)], 0.01,
                        [released.set]).start()  # fmt: skip
        assert second_round.wait(10)
        loop.stop()
    # A failed pass is logged with its cause and the next job still runs, every round.
    assert ran[:4] == ["failing", "counting", "failing", "counting"]
    assert loop.passes >= 2
    assert released.is_set()  # the cleanups run on the loop's own thread
    assert "failing pass failed" in caplog.text and "one bad pass" in caplog.text


def test_load_required_names_the_part_that_cannot_be_imported(monkeypatch):
    monkeypatch.setattr(run_module, "REQUIRED", (("monitor.no_such_part", "a planted part"),))
    with pytest.raises(StartError, match=r"a planted part \(monitor.no_such_part\) cannot be"):
        run_module.load_required()

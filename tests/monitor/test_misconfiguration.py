"""Misconfiguration fails fast: one line on stderr, exit 2, within seconds (DESIGN.md §5a).

Each case runs the real `radwatch` in a subprocess against the real embedded broker and
PostgreSQL (or a port nobody listens on, a host that cannot resolve). A hang shows up as
the subprocess timeout, a traceback as more than one stderr line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from conftest import REPO, app_url, radwatch_cmd, settings_env

from collectors.kafka_io import BrokerUnavailable, KafkaOptions, wait_for_broker
from monitor.services import embedded as services
from monitor.store import db

FAST_S = 10.0  # "within seconds": the bound every case is held to, Python start-up included


def fails_fast(env: dict[str, str], *args: str, warnings: int = 0) -> str:
    """Run radwatch; assert exit 2, one stderr line and no traceback, in under FAST_S.

    `warnings`: log lines expected before it (a setting that allows a risk says so)."""
    started = time.monotonic()
    result = subprocess.run(radwatch_cmd(*args), env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=3 * FAST_S)  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 2, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 + warnings, result.stderr[-3000:]
    assert all(" WARNING " in line for line in lines[:-1]), result.stderr[-3000:]
    assert lines[-1].startswith("radwatch"), result.stderr[-3000:]
    assert elapsed < FAST_S, f"took {elapsed:.1f}s: {lines[-1]}"
    return lines[-1]


def with_url(url: str, *, user: str | None = None, port: int | None = None,
             database: str | None = None) -> str:  # fmt: skip
    """`url` with one part replaced; a new user gets no password."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    auth = str(info["user"]) + (f":{info['password']}" if info.get("password") else "")
    return (f"postgresql://{user or auth}@{info['host']}:{port or info['port']}/"
            f"{database or info['dbname']}")  # fmt: skip


def plain_env(**radwatch: str) -> dict[str, str]:
    """This process's environment without RADWATCH_* settings, plus `radwatch`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RADWATCH_")} | radwatch


# --- PostgreSQL ------------------------------------------------------------------------------


def test_wrong_postgres_port_is_one_line(settings):
    env = settings_env(settings)
    env["RADWATCH_DATABASE_URL"] = with_url(settings.database_url, port=services.free_port())
    for command in (["status"], ["alerts", "list"], ["db", "migrate"]):
        line = fails_fast(env, *command)
        assert "PostgreSQL at 127.0.0.1:" in line and "refused" in line.lower(), line


def test_missing_database_is_one_line(settings):
    env = settings_env(settings)
    env["RADWATCH_DATABASE_URL"] = with_url(settings.database_url, database="no_such_db_3f9")
    for command in (["status"], ["reference", "build", "--model", "m", "--first", "10"]):
        line = fails_fast(env, *command)
        assert 'database "no_such_db_3f9" does not exist' in line, line


def test_wrong_role_is_one_line_and_never_shows_the_password(settings):
    env = settings_env(settings)
    info = psycopg.conninfo.conninfo_to_dict(settings.database_url)
    env["RADWATCH_DATABASE_URL"] = (f"postgresql://nobody_7c1:wrong-secret-0x55@{info['host']}:"
                                    f"{info['port']}/{info['dbname']}")  # fmt: skip
    line = fails_fast(env, "alerts", "list")
    assert "PostgreSQL at 127.0.0.1:" in line and "check the user" in line, line
    assert "wrong-secret-0x55" not in line


def test_permanent_postgres_errors_are_not_retried_even_by_services(settings):
    # with_retry is what the services wait with; a missing database never starts existing.
    url = with_url(settings.database_url, database="no_such_db_3f9")
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as caught:
        db.with_retry(lambda: db.connect(url).close(), what="connecting")
    assert time.monotonic() - started < 5
    assert db.describe(caught.value).permanent


def test_services_wait_out_a_transient_outage_and_say_so(settings, caplog):
    # A refused connection may be a server restarting: services retry it with backoff and a
    # log line each time (until told to stop), unlike the permanent errors above.
    url = with_url(settings.database_url, port=services.free_port())
    attempts = []

    def connect() -> None:
        attempts.append(time.monotonic())
        db.connect(url).close()

    with (
        caplog.at_level("WARNING", logger="monitor.store.db"),
        pytest.raises(psycopg.OperationalError),
    ):
        db.with_retry(connect, what="connecting", should_stop=lambda: len(attempts) >= 3)
    assert len(attempts) == 3
    waits = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(waits) == 2 and "PostgreSQL at 127.0.0.1:" in waits[0], waits
    bootstrap = f"127.0.0.1:{services.free_port()}"
    with (
        caplog.at_level("WARNING", logger="collectors.kafka_io"),
        pytest.raises(BrokerUnavailable) as caught,
    ):
        wait_for_broker(KafkaOptions(bootstrap), timeout=1.0)
    assert not caught.value.permanent
    assert any("unavailable (connection refused); retrying" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_unresolvable_postgres_host_is_one_line(settings):
    env = settings_env(settings)
    # sslmode=require: plaintext to a non-loopback host is refused before any connection.
    env["RADWATCH_DATABASE_URL"] = "postgresql://u@nonexistent.invalid:5432/x?sslmode=require"
    line = fails_fast(env, "status")
    assert "nonexistent.invalid" in line and "does not resolve" in line, line


@pytest.mark.parametrize("url", ["mysql://user:pw-9d2@127.0.0.1/db", "http://127.0.0.1/x"])
def test_non_postgresql_scheme_is_one_line(settings, url):
    env = settings_env(settings)
    env["RADWATCH_DATABASE_URL"] = url
    line = fails_fast(env, "alerts", "list")
    assert "pw-9d2" not in line
    # Refused by the settings or by db.check_url, whichever looks first; never by libpq.
    with pytest.raises(db.DatabaseURLError):
        db.check_url(url)


def test_read_only_commands_do_not_migrate(embedded, settings):
    """A database radwatch never migrated: the commands say to run `radwatch db migrate`
    and leave it as they found it."""
    name = "t_bare_" + uuid.uuid4().hex[:8]
    owner = embedded.owner_database_url or embedded.database_url
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = settings_env(settings)
    env["RADWATCH_DATABASE_URL"] = with_url(settings.database_url, database=name)
    for command in (["status"], ["alerts", "list"], ["report", "--model", "m", "--out",
                    str(Path(tempfile.gettempdir()) / "r.html")], ["audit", "verify"]):  # fmt: skip
        line = fails_fast(env, *command)
        assert "run `radwatch db migrate`" in line, line
    with psycopg.connect(with_url(settings.database_url, database=name)) as conn:
        found = conn.execute("SELECT to_regclass('schema_version')").fetchone()
    assert found == (None,)


def test_a_login_that_may_not_migrate_gets_one_line(embedded, settings):
    """The services' least-privileged login: nothing pending passes; pending migrations on
    a bare database are refused by PostgreSQL, and that is one line naming the owner."""
    assert db.migrate(app_url(embedded, settings.database_url)) == []
    name = "t_bare_" + uuid.uuid4().hex[:8]
    owner = embedded.owner_database_url or embedded.database_url
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = settings_env(settings)
    env["RADWATCH_DATABASE_URL"] = app_url(embedded, with_url(settings.database_url, database=name))
    line = fails_fast(env, "reference", "build", "--model", "m", "--first", "10")
    assert "permission denied" in line and "database owner" in line, line


# --- Kafka -------------------------------------------------------------------------------------


def test_simulate_with_an_unreachable_broker_is_one_line(settings):
    env = settings_env(settings)
    env["RADWATCH_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{services.free_port()}"
    line = fails_fast(env, "simulate", "--events", "3")
    assert "Kafka at 127.0.0.1:" in line and "connection refused" in line, line
    # status reads consumer lag: the same broker, the same line.
    assert "Kafka at 127.0.0.1:" in fails_fast(env, "status")


def test_a_bootstrap_that_is_not_kafka_is_one_line(settings):
    # Something listens there (the embedded PostgreSQL) but does not speak Kafka: the probe
    # gives up after its bootstrap timeout, with kafka-python's retry chatter held back.
    env = settings_env(settings)
    port = psycopg.conninfo.conninfo_to_dict(settings.database_url)["port"]
    env["RADWATCH_KAFKA_BOOTSTRAP"] = f"127.0.0.1:{port}"
    line = fails_fast(env, "simulate", "--events", "3")
    assert "no Kafka answer" in line, line


def test_unresolvable_broker_is_permanent(settings):
    env = settings_env(settings)
    env["RADWATCH_KAFKA_BOOTSTRAP"] = "nonexistent.invalid:9092"
    env["RADWATCH_ALLOW_PLAINTEXT_KAFKA"] = "true"  # past the transport check, to DNS
    line = fails_fast(env, "simulate", "--events", "3", warnings=1)
    assert "does not resolve" in line, line
    # A service's wait (timeout=None) gives up at once too: the address never starts working.
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        wait_for_broker(KafkaOptions("nonexistent.invalid:9092"))
    assert caught.value.permanent and time.monotonic() - started < 5


# --- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["reference", "build", "--model", "m", "--first", "0"], "--first: must be a positive"),
        (["simulate", "--events", "-5"], "--events: must be a positive"),
        (["simulate", "--events", "3", "--rate", "0"], "--rate: must be a positive"),
        (["detect", "--once", "--interval", "nan"], "--interval: must be a positive"),
        (["performance", "--window", "lots"], "--window: not a whole number"),
        (["alerts", "ack", "0", "--by", "qa", "--note", "n"], "must be a positive"),
        (["audit", "export", "--format", "csv", "--out", "/nonexistent/dir/x.csv"],
         "folder /nonexistent/dir does not exist"),
        (["report", "--model", "m", "--out", "/nonexistent/dir/r.html"], "does not exist"),
        (["compliance-report", "--model", "m", "--period", "2026-11-01/2026-11-30", "--out",
          "/nonexistent/dir/c.html"], "does not exist"),
        (["audit", "export", "--format", "csv", "--out", "/"], "is a folder"),
        (["demo", "--out", "{a_file}/out"], "is not a folder"),
    ],
)  # fmt: skip
def test_invalid_arguments_are_one_line(settings, tmp_path, args, fragment):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    args = [a.replace("{a_file}", str(a_file)) for a in args]
    line = fails_fast(settings_env(settings), *args)
    assert fragment in line, line


# --- stopped embedded services ---------------------------------------------------------------


def test_read_only_commands_never_start_stopped_services():
    # Not under pytest's tmp dir, which other pytest sessions reset to 0700 (see conftest).
    data_dir = Path(tempfile.mkdtemp(prefix="radwatch-test-down-"))
    env = plain_env(RADWATCH_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    try:
        up = subprocess.run(radwatch_cmd("services", "up", "--detach"), env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
        assert up.returncode == 0, up.stderr[-3000:]
        down = subprocess.run(radwatch_cmd("services", "down"), env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert down.returncode == 0, down.stderr[-3000:]
        state_before = (data_dir / "services.json").read_text()
        state = json.loads(state_before)
        for command in (["alerts", "list"], ["status"], ["audit", "verify"],
                        ["performance"], ["alerts", "resolve", "1", "--by", "qa", "--note", "n"],
                        ["report", "--model", "m", "--out", str(data_dir / "r.html")]):  # fmt: skip
            line = fails_fast(env, *command)
            assert "is not running (run `radwatch services up`" in line, line
        # Nothing was started: same state file, no postmaster, nobody on the old ports.
        assert (data_dir / "services.json").read_text() == state_before
        assert not (data_dir / "pg" / "postmaster.pid").exists()
        assert not services.port_open(state["pg_port"])
        assert not services.port_open(state["broker_port"])
    finally:
        subprocess.run(radwatch_cmd("services", "down"), env=env, cwd=REPO, capture_output=True,
                       timeout=120)  # fmt: skip
        shutil.rmtree(data_dir, ignore_errors=True)


# --- bugs are not user errors ------------------------------------------------------------------


def test_an_unexpected_error_shows_its_traceback_and_exits_3(settings):
    # A handler with a bug (not a server, not the user): the traceback stays visible and the
    # exit code is not 1, which means "a finding" (e.g. a tampered audit trail).
    code = ("import sys; import monitor.commands.status_cmd as s; "
            "s._status = lambda args, settings: {}['missing']; "
            "from monitor.cli import main; sys.exit(main(['status']))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], env=settings_env(settings), cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" in result.stderr and "KeyError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("radwatch: internal error (KeyError)")

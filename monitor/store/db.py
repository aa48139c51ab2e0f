"""PostgreSQL connections and versioned schema migrations (`radwatch db migrate`).

The storage edge of the data flow. Migrations are numbered SQL files in
monitor/store/migrations/, applied in order inside one transaction under an advisory lock, so
several workers starting at once never race. A tiny runner of our own rather than
Alembic: our schema is plain SQL and Alembic would bring SQLAlchemy for no other use.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TypeVar

import psycopg
import psycopg.conninfo

from monitor.errors import ConfigError, RadwatchError

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x7261647761746368  # "radwatch" as a 64-bit advisory-lock key
# Seconds libpq waits for each address to answer: a one-shot command against a wrong or
# firewalled host fails within seconds instead of waiting on the kernel's TCP timeout.
CONNECT_TIMEOUT_S = 5
T = TypeVar("T")


class DatabaseURLError(ConfigError):
    """The database URL is not a PostgreSQL URL: configuration, never retried (exit 2)."""


class SchemaError(RadwatchError, RuntimeError):
    """The database's schema is not the one this radwatch needs (`radwatch db migrate`)."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations() -> list[Migration]:
    """The migrations shipped in the package, ordered by their number prefix."""
    found = []
    for entry in resources.files("monitor.store.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def check_url(url: str) -> None:
    """Refuse what is not a libpq URL or key=value DSN before libpq sees it.

    psycopg's own error for, say, `mysql://user:pw@host/db` quotes the whole URL, password
    included; ours names only the scheme.
    """
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() not in ("postgresql", "postgres"):
        shown = scheme if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,20}", scheme) else "another"
        raise DatabaseURLError(
            f"the database URL must start with postgresql://, not {shown}:// "
            "(RADWATCH_DATABASE_URL)"
        )
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise DatabaseURLError(
            "the database URL is not a valid PostgreSQL URL or DSN (RADWATCH_DATABASE_URL)"
        ) from None  # its message may quote the URL, password included


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    check_url(url)
    # A short connect timeout so an outage is noticed and retried, not waited out.
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)


def migrate(
    url: str,
    *,
    on_applied: Callable[[psycopg.Connection, list[Migration]], None] | None = None,
) -> list[Migration]:
    """Apply pending migrations; return those applied (empty when already up to date).

    `on_applied` runs inside the migration transaction, after the last one: the caller's
    audit record (monitor.services.runtime.migrate_schema) commits or rolls back with the schema,
    and storage never imports the audit layer above it.
    """
    applied: list[Migration] = []
    with connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        # Created only when missing: even CREATE ... IF NOT EXISTS needs CREATE on the schema,
        # and a least-privileged login with nothing to migrate must pass through here.
        if conn.execute("SELECT to_regclass('schema_version')").fetchone() in (None, (None,)):
            conn.execute(
                """CREATE TABLE schema_version (
                       version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
        rows = conn.execute("SELECT version, sha256 FROM schema_version").fetchall()
        done: dict[int, str] = {int(v): str(h) for v, h in rows}
        for migration in migrations():
            if migration.version in done:
                if done[migration.version] != migration.sha256:
                    log.warning("migration %04d was edited after it was applied", migration.version)
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_version (version, name, sha256) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.sha256),
            )
            applied.append(migration)
        if on_applied is not None:
            on_applied(conn, applied)
    return applied


def schema_version(url: str) -> int:
    """The highest applied migration; 0 for a database radwatch has never migrated."""
    with connect(url) as conn:
        if conn.execute("SELECT to_regclass('schema_version')").fetchone() in (None, (None,)):
            return 0
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0


def check_schema(url: str) -> int:
    """For commands that must not migrate: the schema version, if it is the one we need.

    Raises SchemaError naming the command to run when migrations are pending. A newer schema
    (a newer radwatch migrated it) is accepted: migrations only add.
    """
    have, need = schema_version(url), max(m.version for m in migrations())
    if have == 0:
        raise SchemaError("this database has no radwatch schema yet (run `radwatch db migrate`)")
    if have < need:
        raise SchemaError(
            f"the database schema is at version {have}, this radwatch needs {need} "
            "(run `radwatch db migrate`)"
        )
    return have


@dataclass(frozen=True)
class Problem:
    """What went wrong reaching PostgreSQL, on one line without secrets, and whether
    waiting could help (`permanent` problems are configuration: retrying never fixes them)."""

    message: str
    permanent: bool


# libpq's connection errors carry no SQLSTATE in psycopg 3, so they are told apart by the
# server's or libpq's message (stable across PostgreSQL 12-18). (fragment, permanent, hint)
_RULES: tuple[tuple[str, bool, str], ...] = (
    ("does not resolve", True, "check the host"),
    ("could not translate host name", True, "check the host"),
    ("password authentication failed", True, "check the user and password"),
    ("authentication failed", True, "check the user and password"),
    ("no password supplied", True, "check the user and password"),
    ("no pg_hba.conf entry", True, "the server does not accept this user from here"),
    ('role "', True, "check the user"),
    ('database "', True, "create it, or correct the database name"),
    ("permission denied for database", True, "grant CONNECT, or use another user"),
    # TLS set up wrongly on either side; a TLS connection that drops is transient.
    ("ssl was required", True, "check sslmode and the server's TLS setup"),
    ("does not support ssl", True, "check sslmode and the server's TLS setup"),
    ("ssl negotiation", True, "is this a PostgreSQL server? check the host and port"),
    ("certificate", True, "check sslmode, sslrootcert and the server's certificate"),
    ("connection refused", False, "is PostgreSQL running there? check the host and port"),
    ("timeout expired", False, "no answer; check the host, port and firewall"),
    ("no such file or directory", False, "is PostgreSQL running? check the host"),
)
_SERVER = re.compile(
    r'connection to server (?:at "(?P<host>[^"]*)"(?: \([^)]*\))?, port (?P<port>\d+)'
    r'|on socket "(?P<socket>[^"]*)") failed: (?P<reason>[^\n]*)'
)
_UNRESOLVED = re.compile(r"failed to resolve host '(?P<host>[^']*)'")


def describe(exc: psycopg.Error) -> Problem:
    """Classify a PostgreSQL error for the command line and for retry loops."""
    text = str(exc).strip()
    where, reason = "", text.splitlines()[0] if text else type(exc).__name__
    found = list(_SERVER.finditer(text))  # one per address tried: the last one decides
    if found:
        last = found[-1]
        where = (f" at {last['host']}:{last['port']}" if last["host"] is not None
                 else f" at {last['socket']}")  # fmt: skip
        reason = last["reason"]
    elif unresolved := _UNRESOLVED.search(text):
        where, reason = f" at {unresolved['host']}", "host name does not resolve"
    reason = " ".join(reason.replace("FATAL:", "").split()) or type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None) or ""
    permanent, hint = sqlstate[:2] == "28" or sqlstate == "3D000", ""
    for fragment, rule_permanent, rule_hint in _RULES:
        if fragment in reason.lower():
            permanent, hint = rule_permanent, rule_hint
            break
    detail = f"{reason} ({hint}; RADWATCH_DATABASE_URL)" if hint else reason
    return Problem(f"PostgreSQL{where}: {detail}", permanent)


def with_retry(
    action: Callable[[], T],
    *,
    what: str,
    should_stop: Callable[[], bool] = lambda: False,
    max_delay: float = 10.0,
) -> T:
    """Run `action` until it succeeds, backing off on connection errors with a clear log line.

    Only transient operational errors (server down or starting, connection lost) are
    retried. Permanent ones (authentication, a missing database, a host that does not
    resolve) and programming or data errors propagate at once: retrying never fixes them.
    """
    delay = 0.2
    while True:
        try:
            return action()
        except psycopg.OperationalError as exc:
            problem = describe(exc)
            if problem.permanent or should_stop():
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, problem.message, delay)
            time.sleep(delay)
            delay = min(max_delay, delay * 2)

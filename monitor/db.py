"""PostgreSQL connections and versioned schema migrations (`radwatch db migrate`).

The storage edge of the data flow. Migrations are numbered SQL files in
monitor/migrations/, applied in order inside one transaction under an advisory lock, so
several workers starting at once never race. A tiny runner of our own rather than
Alembic: our schema is plain SQL and Alembic would bring SQLAlchemy for no other use.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TypeVar

import psycopg

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x7261647761746368  # "radwatch" as a 64-bit advisory-lock key
T = TypeVar("T")


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
    for entry in resources.files("monitor.migrations").iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(found, key=lambda m: m.version)


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection:
    # A short connect timeout so an outage is noticed and retried, not waited out.
    return psycopg.connect(url, autocommit=autocommit, connect_timeout=5)


def migrate(url: str) -> list[Migration]:
    """Apply pending migrations; return those applied (empty when already up to date)."""
    applied: list[Migration] = []
    with connect(url) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_version (
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
        # Audit trail (issue 8): each applied migration, once the audit table exists.
        from monitor import audit

        audit.record_migrations(conn, applied)
    return applied


def schema_version(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
        return int(row[0]) if row else 0


def with_retry(
    action: Callable[[], T],
    *,
    what: str,
    should_stop: Callable[[], bool] = lambda: False,
    max_delay: float = 10.0,
) -> T:
    """Run `action` until it succeeds, backing off on connection errors with a clear log line.

    Only operational errors (server down, connection lost) are retried; a programming or
    data error propagates at once, since retrying it would never succeed.
    """
    delay = 0.2
    while True:
        try:
            return action()
        except psycopg.OperationalError as exc:
            if should_stop():
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "%s failed (PostgreSQL unavailable: %s); retrying in %.1fs", what, reason, delay
            )
            time.sleep(delay)
            delay = min(max_delay, delay * 2)

"""The tamper-evident audit trail: append-only, hash-chained rows in PostgreSQL.

Every layer that decides or acts calls `record(...)` inside its own transaction, so the
audit row commits or rolls back with the decision it describes. Rows are chained:
row_hash = SHA-256(prev_hash + canonical JSON of the row), with a gapless sequence taken
under a transaction-scoped advisory lock (21 CFR 11.10(e): never obscure earlier entries).
Checkpoints (audit_checkpoint), verification (audit_verify) and exports (audit_export)
read what this module writes; lifecycle helpers here record start/stop, configuration
changes and migrations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from monitor.audit.actions import AuditAction, UnknownAuditAction, validate
from monitor.errors import RadwatchError
from monitor.safeguards import mask_secrets

if TYPE_CHECKING:  # db imports this module lazily inside migrate(); avoid a cycle at import
    from monitor.store.db import Migration

log = logging.getLogger(__name__)

AUDIT_LOCK = 0x61756469745F6C6B  # "audit_lk": serialises appends so the sequence is gapless
GENESIS = "0" * 64
COLUMNS = (
    "seq, recorded_at, actor, action, entity_type, entity_id, entity_version, outcome, "
    "reason, refs, detail, prev_hash, row_hash"
)


class AuditError(RadwatchError, RuntimeError):
    """The audit trail cannot be written, read or checked as asked."""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    recorded_at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    entity_version: str | None
    outcome: str
    reason: str | None
    refs: Mapping[str, Any]
    detail: Mapping[str, Any]
    prev_hash: str
    row_hash: str

    def content(self) -> dict[str, Any]:
        """What the hash covers: every column except the hashes themselves."""
        return {
            "seq": self.seq,
            "recorded_at": self.recorded_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": self.actor,
            "action": self.action,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "entity_version": self.entity_version,
            "outcome": self.outcome,
            "reason": self.reason,
            "refs": dict(self.refs),
            "detail": dict(self.detail),
        }

    def computed_hash(self, *, seq: int | None = None) -> str:
        """The hash this row should carry (optionally as if it had sequence number `seq`)."""
        content = self.content()
        if seq is not None:
            content["seq"] = seq
        return chain_hash(self.prev_hash, content)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def _jsonable(value: Any) -> Any:
    """Plain JSON values: jsonb refuses NaN/Infinity, so non-finite floats become strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return str(value)


def _masked(value: Any) -> Any:
    """Every string of a JSON value with URL/DSN passwords masked: whatever a caller puts in
    refs or detail (an error text quoting a URL, a setting), no password is chained."""
    if isinstance(value, dict):
        return {mask_secrets(k): _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return mask_secrets(value) if isinstance(value, str) else value


def _as_stored(conn: psycopg.Connection, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """`value` exactly as jsonb will give it back (jsonb rewrites numbers such as 1e+16),
    so the hash computed now recomputes bit for bit when the row is read back."""
    plain = _masked(_jsonable(value or {}))
    row = conn.execute("SELECT %s::jsonb", (Jsonb(plain),)).fetchone()
    assert row is not None
    return dict(row[0])


def lock(conn: psycopg.Connection) -> None:
    """Take the audit lock now, for the rest of the caller's transaction.

    `record` takes it anyway; a writer that locks rows (FOR UPDATE) and then records takes it
    first, so that the lock order is always audit lock → rows. Otherwise a person's
    acknowledgement (incident row, then audit) and the scheduler's window (audit held from an
    earlier row of the same transaction, then the alert row) wait on each other.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))


def record(
    conn: psycopg.Connection,
    *,
    actor: str,
    action: AuditAction | str,
    entity_type: str,
    entity_id: str,
    outcome: str = "success",
    entity_version: str | None = None,
    reason: str | None = None,
    refs: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit row in the caller's transaction (opens one if the caller has none).

    Inside an open transaction the row commits or rolls back with it (a savepoint here); on
    an idle connection psycopg's outermost transaction() commits the row at once. Appends are
    serialised by an advisory lock held until the caller commits: keep such transactions
    short. Never put PHI in any field: identifiers must already be pseudonyms (DESIGN.md §5).
    `action` and `outcome` must be in the catalogue (monitor.audit.actions): a row the FHIR
    export could not code is refused here, before anything is written.
    """
    try:
        # The plain string: psycopg would store an Enum member by its name, the hash its value.
        action = validate(action, outcome).value
    except UnknownAuditAction as exc:
        raise AuditError(str(exc)) from exc
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        last = conn.execute(
            "SELECT seq, row_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
        # Microsecond precision, as PostgreSQL stores it, so the hash recomputes exactly.
        now = datetime.now(UTC)
        refs_j = _as_stored(conn, refs)
        detail_j = _as_stored(conn, detail)
        reason = mask_secrets(reason) if reason else reason
        row = AuditRecord(seq, now, actor, action, entity_type, entity_id, entity_version,
                          outcome, reason, refs_j, detail_j, prev, "")  # fmt: skip
        row_hash = row.computed_hash()
        conn.execute(
            f"INSERT INTO audit_events ({COLUMNS}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (seq, now, actor, action, entity_type, entity_id, entity_version, outcome, reason,
             Jsonb(refs_j), Jsonb(detail_j), prev,
             row_hash),
        )  # fmt: skip
    return dataclasses.replace(row, row_hash=row_hash)


def _from_row(row: Sequence[Any]) -> AuditRecord:
    (seq, recorded_at, actor, action, etype, eid, ever, outcome, reason, refs, detail, prev,
     rhash) = row  # fmt: skip
    return AuditRecord(int(seq), recorded_at, actor, action, etype, eid, ever, outcome, reason,
                       refs or {}, detail or {}, prev, rhash)  # fmt: skip


def read_records(
    conn: psycopg.Connection,
    *,
    first_seq: int = 1,
    last_seq: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int = 5000,
) -> Iterator[AuditRecord]:
    """Rows in sequence order, fetched in batches by seq (keyset), filtered by time if asked."""
    after = first_seq - 1
    while True:
        rows = conn.execute(
            f"""SELECT {COLUMNS} FROM audit_events
                WHERE seq > %s AND (%s::bigint IS NULL OR seq <= %s)
                  AND (%s::timestamptz IS NULL OR recorded_at >= %s)
                  AND (%s::timestamptz IS NULL OR recorded_at < %s)
                ORDER BY seq LIMIT %s""",
            (after, last_seq, last_seq, since, since, until, until, batch),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _from_row(row)
        after = int(rows[-1][0])


def audit_table_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('audit_events') IS NOT NULL").fetchone()
    return bool(row and row[0])


# -- lifecycle events: version, configuration, migrations --------------------------------------

SECRET_WORDS = ("password", "secret", "token", "key", "credential", "sasl_plain")


def radwatch_version() -> str:
    try:
        return metadata.version("radwatch")
    except metadata.PackageNotFoundError:
        # Running from a source tree that was never installed: say so rather than guess.
        return "0+unknown"


def config_snapshot(config: Any) -> dict[str, Any]:
    """Settings as a JSON mapping without secrets: values of secret-looking names become
    "set"/None; every string anywhere (nested mappings, lists, dataclasses such as
    KafkaOptions) has its URL and DSN passwords masked, whatever the field is called.
    Accepts a dataclass or a mapping."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        raw = dataclasses.asdict(config)
    else:
        raw = dict(config)

    def clean(name: str, value: Any) -> Any:
        lowered = name.lower()
        if any(word in lowered for word in SECRET_WORDS):
            return None if value in (None, "") else "set"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if isinstance(value, Mapping):
            return {mask_secrets(str(k)): clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [clean(name, v) for v in value]
        if isinstance(value, str):
            return mask_secrets(value)
        plain = _jsonable(value)
        return mask_secrets(plain) if isinstance(plain, str) else plain

    return {str(k): clean(str(k), v) for k, v in raw.items()}


def config_hash(snapshot: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(snapshot).encode()).hexdigest()


def record_start(
    conn: psycopg.Connection, *, component: str, config: Any, actor: str = "radwatch"
) -> AuditRecord:
    """Record `radwatch.start` with the version and the configuration hash, preceded by a
    `config.changed` row listing the changed keys when it differs from the last start's."""
    snapshot = config_snapshot(config)
    digest = config_hash(snapshot)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        last = conn.execute(
            """SELECT detail FROM audit_events WHERE action = 'radwatch.start'
                 AND entity_type = 'component' AND entity_id = %s
               ORDER BY seq DESC LIMIT 1""",
            (component,),
        ).fetchone()
        previous = dict(last[0]) if last else None
        if previous is None or previous.get("config_sha256") != digest:
            before = previous.get("config", {}) if previous else {}
            changed = sorted(
                k for k in set(before) | set(snapshot) if before.get(k) != snapshot.get(k)
            )
            record(conn, actor=actor, action=AuditAction.CONFIG_CHANGED,
                   entity_type="configuration", entity_id=component, entity_version=digest[:16],
                   reason="first start" if previous is None else "differs from the last start",
                   detail={"config_sha256": digest, "changed_keys": changed,
                           "previous_sha256": previous.get("config_sha256") if previous else None,
                           "config": snapshot})  # fmt: skip
        return record(conn, actor=actor, action=AuditAction.RADWATCH_START, entity_type="component",
                      entity_id=component, entity_version=radwatch_version(),
                      detail={"config_sha256": digest, "config": snapshot})  # fmt: skip


def record_stop(
    conn: psycopg.Connection,
    *,
    component: str,
    actor: str = "radwatch",
    outcome: str = "success",
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditRecord:
    return record(conn, actor=actor, action=AuditAction.RADWATCH_STOP, entity_type="component",
                  entity_id=component, entity_version=radwatch_version(), outcome=outcome,
                  reason=reason, detail=detail)  # fmt: skip


def record_migrations(
    conn: psycopg.Connection, applied: Sequence[Migration], actor: str = "radwatch"
) -> None:
    """One `schema.migrate` row per applied migration, once the audit table exists (the
    migrations that created it are recorded right after, in the same transaction)."""
    if not applied or not audit_table_exists(conn):
        return
    for migration in applied:
        record(conn, actor=actor, action=AuditAction.SCHEMA_MIGRATE, entity_type="schema",
               entity_id=f"{migration.version:04d}_{migration.name}",
               entity_version=str(migration.version),
               detail={"sql_sha256": migration.sha256})  # fmt: skip


class Lifecycle:
    """`radwatch.start` / `radwatch.stop` of one long-running component, on its own
    connection so they never ride on (or roll back with) a data batch."""

    def __init__(self, database_url: str, *, component: str, config: Any, actor: str = "radwatch"):
        self.database_url = database_url
        self.component = component
        self.config = config
        self.actor = actor
        self.started: AuditRecord | None = None

    def start(self, *, should_stop: Callable[[], bool] = lambda: False) -> AuditRecord | None:
        from monitor.store import db

        def write() -> AuditRecord:
            with db.connect(self.database_url, autocommit=True) as conn:
                return record_start(conn, component=self.component, config=self.config,
                                    actor=self.actor)  # fmt: skip

        try:
            self.started = db.with_retry(write, what="recording the start in the audit trail",
                                         should_stop=should_stop)  # fmt: skip
        except psycopg.OperationalError:
            # Only reached when a stop was requested while PostgreSQL was still down.
            log.warning("stopping before PostgreSQL was reachable: start not recorded")
        return self.started

    def stop(self, *, detail: Mapping[str, Any] | None = None,
             error: BaseException | None = None) -> AuditRecord | None:  # fmt: skip
        from monitor.store import db

        if self.started is None:
            return None  # never started: nothing to pair the stop with
        outcome, reason = ("success", None) if error is None else ("failure", type(error).__name__)
        try:
            with db.connect(self.database_url, autocommit=True) as conn:
                return record_stop(conn, component=self.component, actor=self.actor,
                                   outcome=outcome, reason=reason,
                                   detail={"started_seq": self.started.seq, **(detail or {})})  # fmt: skip
        except psycopg.OperationalError as exc:
            log.error("radwatch.stop of %s not recorded in the audit trail: PostgreSQL "
                      "unavailable (%s)", self.component, str(exc).strip().splitlines()[:1])  # fmt: skip
            return None

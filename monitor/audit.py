"""The tamper-evident audit trail: append-only, hash-chained rows in PostgreSQL.

Every layer that decides or acts calls `record(...)` inside its own transaction, so the
audit row commits or rolls back with the decision it describes. Rows are chained:
row_hash = SHA-256(prev_hash + canonical JSON of the row), with a gapless sequence taken
under a transaction-scoped advisory lock (21 CFR 11.10(e): never obscure earlier entries).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

AUDIT_LOCK = 0x61756469745F6C6B  # "audit_lk": serialises appends so the sequence is gapless
GENESIS = "0" * 64


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


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def record(
    conn: psycopg.Connection,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    outcome: str = "success",
    entity_version: str | None = None,
    reason: str | None = None,
    refs: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one audit row in the caller's transaction (opens one if the caller has none)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        last = conn.execute(
            "SELECT seq, row_hash FROM audit_events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
        # Microsecond precision, as PostgreSQL stores it, so the hash recomputes exactly.
        now = datetime.now(UTC)
        # Round-trip refs/detail through JSON so the hashed form equals what jsonb returns.
        refs_j = json.loads(canonical_json(refs or {}))
        detail_j = json.loads(canonical_json(detail or {}))
        row = AuditRecord(seq, now, actor, action, entity_type, entity_id, entity_version,
                          outcome, reason, refs_j, detail_j, prev, "")  # fmt: skip
        row_hash = chain_hash(prev, row.content())
        conn.execute(
            """INSERT INTO audit_events (seq, recorded_at, actor, action, entity_type, entity_id,
                   entity_version, outcome, reason, refs, detail, prev_hash, row_hash)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (seq, now, actor, action, entity_type, entity_id, entity_version, outcome, reason,
             Jsonb(refs_j), Jsonb(detail_j), prev,
             row_hash),
        )  # fmt: skip
    return AuditRecord(seq, now, actor, action, entity_type, entity_id, entity_version, outcome,
                       reason, refs_j, detail_j, prev, row_hash)  # fmt: skip

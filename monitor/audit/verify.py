"""Verification of the audit trail (`radwatch audit verify`): chain, then signed checkpoints.

Reads audit_events and audit_checkpoints (written by audit / audit_checkpoint) and the
shipped checkpoint file; recomputes every row hash and link, every checkpoint's RFC 6962
root and Ed25519 signature, and names the first bad sequence number and what is wrong:
changed, missing, inserted, reordered or bad signature.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from pathlib import Path

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from monitor.audit.checkpoint import (
    GENESIS_CHECKPOINT,
    Checkpoint,
    key_id,
    key_paths,
    load_public_key,
    merkle_root,
    read_checkpoint_file,
    read_checkpoints,
    row_leaves,
)
from monitor.audit.trail import GENESIS, AuditRecord, read_records
from monitor.config import Settings

SEARCH = 64  # how far from its position a moved row's original sequence number is searched


class Problem(StrEnum):
    CHANGED = "changed"
    MISSING = "missing"
    INSERTED = "inserted"
    REORDERED = "reordered"
    BAD_SIGNATURE = "bad signature"


@dataclass(frozen=True)
class Finding:
    seq: int
    problem: Problem
    message: str
    checkpoint: int | None = None

    def line(self) -> str:
        return f"seq {self.seq}: {self.problem}: {self.message}"


@dataclass(frozen=True)
class VerifyResult:
    rows: int
    last_seq: int
    checkpoints: int
    checkpointed_through: int
    key_id: str | None  # the trusted key the signatures were checked with
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        # Chain findings come first in `findings`; min() is stable, so they win ties.
        return min(self.findings, key=lambda f: f.seq) if self.findings else None

    def summary(self) -> str:
        if self.first is not None:
            return f"audit trail NOT intact: {self.first.line()}"
        tail = (
            f"; rows after seq {self.checkpointed_through} are not yet checkpointed"
            if self.checkpointed_through < self.last_seq
            else ""
        )
        signed = f", signatures checked with key {self.key_id}" if self.key_id else ""
        return (
            f"audit trail intact: {self.rows} rows (seq 1..{self.last_seq}), "
            f"{self.checkpoints} checkpoints{signed}{tail}"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "last_seq": self.last_seq,
            "checkpoints": self.checkpoints,
            "checkpointed_through": self.checkpointed_through,
            "key_id": self.key_id,
            "first_bad_seq": self.first.seq if self.first else None,
            "problem": str(self.first.problem) if self.first else None,
            "findings": [
                {
                    "seq": f.seq,
                    "problem": str(f.problem),
                    "message": f.message,
                    "checkpoint": f.checkpoint,
                }
                for f in self.findings
            ],  # fmt: skip
        }


def verify(
    conn: psycopg.Connection, *, public_key: Path | None, checkpoint_file: Path | None
) -> VerifyResult:
    """Check the whole trail. `public_key` is the trusted Ed25519 key (outside the database);
    checkpoints present without one cannot be trusted and are reported as bad signatures."""
    index = {str(h): int(s) for h, s in conn.execute("SELECT row_hash, seq FROM audit_events")}
    chain, rows, last_seq = _check_chain(conn, index)
    trusted = (
        load_public_key(public_key) if public_key is not None and public_key.exists() else None
    )
    checkpoints = read_checkpoints(conn)
    shipped = read_checkpoint_file(checkpoint_file) if checkpoint_file is not None else []
    # A root over rows the chain already found broken says nothing new, and would point at
    # the checkpoint's first row instead of the bad one: roots are checked below that only.
    broken_at = chain[0].seq if chain else None
    cp_findings = _check_checkpoints(conn, checkpoints, shipped, trusted, broken_at)
    return VerifyResult(
        rows=rows,
        last_seq=last_seq,
        checkpoints=len(checkpoints),
        checkpointed_through=checkpoints[-1].last_seq if checkpoints else 0,
        key_id=key_id(trusted) if trusted is not None else None,
        findings=tuple(chain + cp_findings),
    )


def verify_configured(conn: psycopg.Connection, settings: Settings) -> VerifyResult:
    """`verify` against the public key and shipped checkpoint file the settings name."""
    paths = key_paths(settings)
    return verify(conn, public_key=paths.public, checkpoint_file=paths.checkpoints)


# -- the chain --------------------------------------------------------------------------------


def _check_chain(conn: psycopg.Connection, index: dict[str, int]) -> tuple[list[Finding], int, int]:
    """Walk rows in order; stop at the first anomaly (what follows it cannot be classified
    reliably) and say what it is."""
    expected, good, count, last_seq = 1, GENESIS, 0, 0
    for row in read_records(conn):
        count, last_seq = count + 1, row.seq
        if row.seq > expected:
            return [Finding(expected, Problem.MISSING, f"rows {expected}..{row.seq - 1} are "
                            "missing (the sequence jumps)")], count, last_seq  # fmt: skip
        if row.row_hash == row.computed_hash() and row.prev_hash == good:
            expected, good = expected + 1, row.row_hash
            continue
        return [_classify(conn, row, expected, good, index)], count, last_seq
    return [], count, last_seq


def _original_seq(row: AuditRecord, index: dict[str, int]) -> int | None:
    """The sequence number under which this row's stored hash was computed, if not its own."""
    candidates = [1] if row.prev_hash == GENESIS else []
    if row.prev_hash in index:
        candidates.append(index[row.prev_hash] + 1)
    candidates += [row.seq + d for d in range(-SEARCH, SEARCH + 1) if d and row.seq + d > 0]
    for seq in candidates:
        if seq != row.seq and row.computed_hash(seq=seq) == row.row_hash:
            return seq
    return None


def _classify(
    conn: psycopg.Connection, row: AuditRecord, expected: int, good: str, index: dict[str, int]
) -> Finding:
    if row.row_hash == row.computed_hash():
        # The row is consistent with itself but does not follow the verified row before it.
        if row.prev_hash in index and index[row.prev_hash] > row.seq:
            return Finding(expected, Problem.REORDERED, f"row {row.seq} follows row "
                           f"{index[row.prev_hash]} in the chain, which now comes after it")  # fmt: skip
        bad = max(expected - 1, 1)
        return Finding(bad, Problem.CHANGED, f"row {bad} no longer has the hash row "
                       f"{row.seq} recorded for it (rewritten and re-hashed, or rows after it "
                       "removed and the rest re-hashed)")  # fmt: skip
    original = _original_seq(row, index)
    if original is not None and original < row.seq:
        return Finding(original, Problem.INSERTED, f"row now at seq {row.seq} was recorded as "
                       f"seq {original}: {row.seq - original} row(s) inserted from seq "
                       f"{original}")  # fmt: skip
    if original is not None:
        if row.prev_hash in index:
            return Finding(expected, Problem.REORDERED, f"row now at seq {row.seq} was "
                           f"recorded as seq {original}")  # fmt: skip
        return Finding(expected, Problem.MISSING, f"row now at seq {row.seq} was recorded as "
                       f"seq {original}: rows {expected}..{original - 1} were removed and the "
                       "rest renumbered")  # fmt: skip
    # A foreign row slipped in without renumbering its successors' hashes: the next rows
    # still link to the last verified one under this row's sequence number.
    for later in islice(_after(conn, row.seq), 16):
        if later.prev_hash == good and later.computed_hash(seq=expected) == later.row_hash:
            return Finding(expected, Problem.INSERTED, f"rows {expected}..{later.seq - 1} "
                           "are not part of the chain (inserted)")  # fmt: skip
    return Finding(expected, Problem.CHANGED, f"row {row.seq} does not match its hash "
                   "(a value was changed)")  # fmt: skip


def _after(conn: psycopg.Connection, seq: int) -> Iterator[AuditRecord]:
    return read_records(conn, first_seq=seq + 1, batch=16)


# -- checkpoints ------------------------------------------------------------------------------


def _check_checkpoints(
    conn: psycopg.Connection,
    stored: list[Checkpoint],
    shipped: list[Checkpoint],
    trusted: Ed25519PublicKey | None,
    broken_at: int | None,
) -> list[Finding]:
    findings: list[Finding] = []
    prev_digest, first_seq = GENESIS_CHECKPOINT, 1
    for number, cp in enumerate(stored, 1):
        where = cp.first_seq
        if cp.id != number or cp.prev_checkpoint_hash != prev_digest or cp.first_seq != first_seq:
            findings.append(Finding(min(first_seq, where), Problem.MISSING,
                                    f"checkpoint #{cp.id} does not follow checkpoint "
                                    f"#{number - 1} (a checkpoint was removed or replaced)",
                                    cp.id))  # fmt: skip
        if trusted is None:
            findings.append(Finding(where, Problem.BAD_SIGNATURE, f"checkpoint #{cp.id} "
                                    "cannot be checked: no trusted public key", cp.id))  # fmt: skip
        elif cp.key_id != key_id(trusted) or not cp.signature_valid(trusted):
            findings.append(Finding(where, Problem.BAD_SIGNATURE, f"checkpoint #{cp.id} "
                                    "(rows {}..{}) is not signed by the trusted key".format(
                                        cp.first_seq, cp.last_seq), cp.id))  # fmt: skip
        if broken_at is None or cp.last_seq < broken_at:
            findings += _check_root(conn, cp)
        prev_digest, first_seq = cp.digest(), cp.last_seq + 1
    by_id = {cp.id: cp for cp in stored}
    for cp in shipped:
        if cp.id not in by_id:
            findings.append(Finding(cp.first_seq, Problem.MISSING, f"checkpoint #{cp.id} "
                                    "(from the shipped checkpoint file) is not in the database",
                                    cp.id))  # fmt: skip
        elif by_id[cp.id] != cp:
            findings.append(Finding(cp.first_seq, Problem.BAD_SIGNATURE, f"checkpoint #{cp.id} "
                                    "in the database differs from the shipped copy", cp.id))  # fmt: skip
    return findings


def _check_root(conn: psycopg.Connection, cp: Checkpoint) -> list[Finding]:
    rows = conn.execute(
        "SELECT seq, row_hash FROM audit_events WHERE seq BETWEEN %s AND %s ORDER BY seq",
        (cp.first_seq, cp.last_seq),
    ).fetchall()
    seqs = [int(r[0]) for r in rows]
    span = cp.last_seq - cp.first_seq + 1
    if len(seqs) < span:
        present = set(seqs)
        gone = next(s for s in range(cp.first_seq, cp.last_seq + 1) if s not in present)
        return [Finding(gone, Problem.MISSING, f"row {gone} signed in checkpoint #{cp.id} is "
                        "gone", cp.id)]  # fmt: skip
    if merkle_root(row_leaves([str(r[1]) for r in rows])).hex() != cp.merkle_root:
        return [Finding(cp.first_seq, Problem.CHANGED, f"rows {cp.first_seq}..{cp.last_seq} "
                        f"no longer match the root signed in checkpoint #{cp.id} (rewritten "
                        "and re-hashed)", cp.id)]  # fmt: skip
    return []

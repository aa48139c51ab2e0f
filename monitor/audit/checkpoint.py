"""Signed Merkle checkpoints over the audit trail (`radwatch audit checkpoint`).

Reads the rows trail.record appended since the last checkpoint, computes their RFC 6962
Merkle tree hash (leaf prefix 0x00, node prefix 0x01, RFC 6962 §2.1), signs it with an
Ed25519 key kept OUTSIDE the database (a file in the data dir, created once, mode 0600),
stores it in `audit_checkpoints` and appends it to a JSON-lines file meant to be shipped
elsewhere. A database superuser can recompute a hash chain; they cannot forge the signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from monitor.audit.trail import AUDIT_LOCK, AuditError, canonical_json, record
from monitor.config import Settings
from monitor.safeguards import check_private_file

KEY_FILE = "audit-signing.key"  # its public half is written beside it as audit-signing.pub
CHECKPOINT_FILE = "audit-checkpoints.jsonl"
GENESIS_CHECKPOINT = "0" * 64
CP_COLUMNS = (
    "id, created_at, first_seq, last_seq, merkle_root, last_row_hash, prev_checkpoint_hash, "
    "key_id, signature"
)


# -- RFC 6962 Merkle tree hash ----------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 6962 §2.1: the split point k is the largest power of two < n."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf_hash(leaves[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


def row_leaves(row_hashes: Sequence[str]) -> list[bytes]:
    # A leaf is the row's chain hash: it already commits to the row's content and its past.
    return [bytes.fromhex(h) for h in row_hashes]


# -- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPaths:
    private: Path
    public: Path
    checkpoints: Path


def key_paths(settings: Settings) -> KeyPaths:
    """Settings.audit: TOML keys audit_key_file / audit_public_key_file / audit_checkpoint_file
    or RADWATCH_AUDIT_KEY_FILE / _PUBLIC_KEY_FILE / _CHECKPOINT_FILE; defaults in the data dir."""
    audit = settings.audit
    private = audit.key_file or settings.data_dir / KEY_FILE
    return KeyPaths(
        private=private,
        public=audit.public_key_file or private.with_suffix(".pub"),
        checkpoints=audit.checkpoint_file or settings.data_dir / CHECKPOINT_FILE,
    )


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def load_or_create_key(paths: KeyPaths) -> Ed25519PrivateKey:
    """The signing key: generated once (0600, never in the database), then reused."""
    if not paths.private.exists():
        paths.private.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
        try:
            fd = os.open(paths.private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process created it between our check and open: use theirs
        else:
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
    # A signing key others can read signs nothing they could not forge: refuse it.
    check_private_file(paths.private, "the audit signing key")
    try:
        loaded = serialization.load_pem_private_key(paths.private.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the audit signing key {paths.private}: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise AuditError(f"{paths.private} is not an Ed25519 private key")
    if not paths.public.exists():
        paths.public.parent.mkdir(parents=True, exist_ok=True)
        paths.public.write_bytes(
            loaded.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        )  # fmt: skip
    return loaded


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        loaded = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the audit public key {path}: {exc}") from exc
    if not isinstance(loaded, Ed25519PublicKey):
        raise AuditError(f"{path} is not an Ed25519 public key")
    return loaded


# -- checkpoints ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    id: int
    created_at: str  # ISO 8601 UTC, microseconds
    first_seq: int
    last_seq: int
    merkle_root: str
    last_row_hash: str
    prev_checkpoint_hash: str
    key_id: str
    signature: str  # base64 Ed25519 over signed_message()

    def signed_message(self) -> bytes:
        body = asdict(self)
        del body["signature"]
        return canonical_json({"radwatch.audit.checkpoint": 1, **body}).encode()

    def digest(self) -> str:
        """What the next checkpoint chains to: the hash of this one including its signature."""
        return hashlib.sha256(canonical_json(asdict(self)).encode()).hexdigest()

    def signature_valid(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(base64.b64decode(self.signature, validate=True), self.signed_message())
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Checkpoint:
        cid, created, first, last, root, last_hash, prev, kid, sig = row
        return cls(int(cid), created.astimezone(UTC).isoformat(timespec="microseconds"),
                   int(first), int(last), root, last_hash, prev, kid, sig)  # fmt: skip


def read_checkpoints(conn: psycopg.Connection) -> list[Checkpoint]:
    rows = conn.execute(f"SELECT {CP_COLUMNS} FROM audit_checkpoints ORDER BY id").fetchall()
    return [Checkpoint.from_row(r) for r in rows]


def read_checkpoint_file(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            found.append(Checkpoint(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise AuditError(f"{path}:{number}: not a checkpoint record: {exc}") from exc
    return found


def create_checkpoint(
    conn: psycopg.Connection, settings: Settings, *, actor: str | None = None
) -> Checkpoint | None:
    """Sign the rows added since the last checkpoint and commit; None when there are none.

    The audit lock is held so no row is appended between reading the tail and storing the
    checkpoint; the checkpoint row itself is then recorded in the trail (covered next time).
    """
    paths = key_paths(settings)
    key = load_or_create_key(paths)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (AUDIT_LOCK,))
        last = conn.execute(
            f"SELECT {CP_COLUMNS} FROM audit_checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        previous = Checkpoint.from_row(last) if last else None
        first_seq = previous.last_seq + 1 if previous else 1
        rows = conn.execute(
            "SELECT seq, row_hash FROM audit_events WHERE seq >= %s ORDER BY seq", (first_seq,)
        ).fetchall()
        if not rows:
            return None
        hashes = [str(r[1]) for r in rows]
        unsigned = Checkpoint(
            id=previous.id + 1 if previous else 1,
            created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
            first_seq=first_seq,
            last_seq=int(rows[-1][0]),
            merkle_root=merkle_root(row_leaves(hashes)).hex(),
            last_row_hash=hashes[-1],
            prev_checkpoint_hash=previous.digest() if previous else GENESIS_CHECKPOINT,
            key_id=key_id(key.public_key()),
            signature="",
        )
        signature = base64.b64encode(key.sign(unsigned.signed_message())).decode()
        checkpoint = Checkpoint(**{**asdict(unsigned), "signature": signature})
        conn.execute(
            f"INSERT INTO audit_checkpoints ({CP_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (checkpoint.id, datetime.fromisoformat(checkpoint.created_at), checkpoint.first_seq,
             checkpoint.last_seq, checkpoint.merkle_root, checkpoint.last_row_hash,
             checkpoint.prev_checkpoint_hash, checkpoint.key_id,
             checkpoint.signature),
        )  # fmt: skip
        record(conn, actor=actor or settings.actor, action="audit.checkpoint",
               entity_type="audit_checkpoint", entity_id=str(checkpoint.id),
               refs={"first_seq": checkpoint.first_seq, "last_seq": checkpoint.last_seq,
                     "merkle_root": checkpoint.merkle_root, "key_id": checkpoint.key_id},
               detail={"rows": len(hashes)})  # fmt: skip
    if not conn.autocommit:
        conn.commit()  # the checkpoint is durable before it is shipped
    # Appended after the commit: the shipped file may lag the database (verify accepts that),
    # but never holds a checkpoint the database does not (verify reports that as missing).
    _append_file(paths.checkpoints, checkpoint)
    return checkpoint


def _append_file(path: Path, checkpoint: Checkpoint) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(asdict(checkpoint), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def checkpoint_if_due(
    conn: psycopg.Connection, settings: Settings, *, every_s: float = 3600.0
) -> Checkpoint | None:
    """For service loops (e.g. a `radwatch run` scheduler job): seal when the last checkpoint
    is older than `every_s` and rows were added since; None otherwise. Cheap to call often."""
    row = conn.execute(
        """SELECT (SELECT max(created_at) FROM audit_checkpoints),
                  (SELECT max(last_seq) FROM audit_checkpoints),
                  (SELECT max(seq) FROM audit_events)"""
    ).fetchone()
    assert row is not None
    last_at, sealed, newest = row
    if newest is None or (sealed is not None and newest <= sealed):
        return None
    if last_at is not None and (datetime.now(UTC) - last_at).total_seconds() < every_s:
        return None
    return create_checkpoint(conn, settings)

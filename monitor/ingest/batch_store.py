"""Durable, idempotent writes of one consumed batch (events and dead letters) to PostgreSQL.

Between the collector (validated events) and the database. A batch is written in one
transaction: rows are streamed with COPY into a session temp table, then moved with
`INSERT … ON CONFLICT (event_id) DO NOTHING`, so a replay after a crash stores nothing twice.
An `event_id` already stored with *different* content is returned as a conflict, to be
dead-lettered (the first version is kept).

A dead letter stores only a redacted skeleton of its record (collectors.events.
dead_letter_skeleton), and building it, or its topic record, never raises: the write of a
dead letter is the one step that must succeed for every record.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb, set_json_dumps

from collectors.errors import Reason
from collectors.event_types import InteractionEvent
from collectors.events import InferenceEvent, LabelEvent, dead_letter_skeleton
from collectors.pseudonym import Pseudonymiser
from monitor.store import counters
from monitor.store.float_arrays import use_fast_float4_arrays

E = TypeVar("E", InferenceEvent, LabelEvent, InteractionEvent)


@dataclass(frozen=True)
class Position:
    """Where a record came from in Kafka; kept with every row for audit and replay."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Record:
    """One consumed Kafka record: where it came from and its original bytes."""

    position: Position
    raw: bytes
    key: bytes | None = None


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: Reason
    message: str

    @property
    def position(self) -> Position:
        return self.record.position

    @property
    def raw(self) -> bytes:
        return self.record.raw

    def redacted_payload(self, pseudonym: Pseudonymiser) -> Jsonb | None:
        """The record's known fields, identifiers pseudonymised, DICOM allow-listed; or None.

        Not the record: a skeleton of the contract's fields (no unknown field, no value
        outside the allow-lists). Bytes that are not a JSON object within the decoding
        limits may hold anything, so only their hash and size are stored; the original
        bytes travel on the dead-letter topic. Never raises.
        """
        try:
            skeleton = dead_letter_skeleton(bytes(self.raw), pseudonym)
            # Encoded here, once, so a value jsonb would refuse yields None, not a failed write.
            orjson.dumps(skeleton)
        except Exception:  # noqa: BLE001 - whatever the bytes, the dead letter is written
            return None
        return Jsonb(skeleton) if skeleton is not None else None

    def safe_message(self) -> str:
        """The message as PostgreSQL text: no NUL, valid Unicode, bounded."""
        try:
            text = str(self.message)
        except Exception:  # noqa: BLE001 - a message must never stop a dead letter
            return str(self.reason)
        text = text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
        return text[:500]

    def topic_value(self) -> bytes:
        """The dead-letter topic record (DESIGN.md §4): original bytes, where, why. Never raises."""
        try:
            raw = base64.b64encode(bytes(self.raw or b"")).decode()
        except Exception:  # noqa: BLE001 - raw that is not bytes-like: say so, do not crash
            raw = ""
        return json.dumps(
            {
                "schema": "radwatch.deadletter.v1",
                "original_b64": raw,
                "topic": str(self.position.topic),
                "partition": int(self.position.partition),
                "offset": int(self.position.offset),
                "reason": str(self.reason),
                "message": self.safe_message(),
            }
        ).encode()


@dataclass
class Batch:
    inferences: list[tuple[InferenceEvent, Record]] = field(default_factory=list)
    labels: list[tuple[LabelEvent, Record]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    # Decoded images by event_id, filled by an image stage and never stored as such.
    images: dict[str, Any] = field(default_factory=dict)
    # Optional radwatch.interaction.v1 events (migration 0015); last, so positional callers hold.
    interactions: list[tuple[InteractionEvent, Record]] = field(default_factory=list)

    def __len__(self) -> int:
        return (
            len(self.inferences)
            + len(self.labels)
            + len(self.interactions)
            + len(self.dead_letters)
        )

    def events(self) -> list[tuple[InferenceEvent | LabelEvent | InteractionEvent, Record]]:
        """Every event of the batch with its record, whatever its kind."""
        return [*self.inferences, *self.labels, *self.interactions]


@dataclass(frozen=True)
class WriteOutcome:
    inferences_new: int
    labels_new: int
    dead_letters: tuple[DeadLetter, ...]  # the batch's own plus the conflicts found here
    interactions_new: int = 0


# Columns and their PostgreSQL types (migration 0001): COPY runs in binary format, each
# value dumped by the C dumper of its column's type (no text formatting, no parsing there).
_INFERENCE_COLUMNS = (
    ("event_id", "text"), ("content_hash", "text"), ("model_name", "text"),
    ("model_version", "text"), ("site", "text"), ("occurred_at", "timestamptz"),
    ("study_pseudo", "text"), ("series_pseudo", "text"), ("sop_pseudo", "text"),
    ("accession_pseudo", "text"), ("patient_pseudo", "text"), ("image_ref", "text"),
    ("dicom", "jsonb"), ("scores", "jsonb"), ("thresholds", "jsonb"), ("embedding", "float4[]"),
    ("latency_ms", "float8"), ("extra", "jsonb"), ("kafka_topic", "text"),
    ("kafka_partition", "int4"), ("kafka_offset", "int8"),
)  # fmt: skip
_LABEL_COLUMNS = (
    ("event_id", "text"), ("content_hash", "text"), ("model_name", "text"),
    ("study_pseudo", "text"), ("labels", "jsonb"), ("source", "text"),
    ("occurred_at", "timestamptz"), ("extra", "jsonb"), ("kafka_topic", "text"),
    ("kafka_partition", "int4"), ("kafka_offset", "int8"),
    # migration 0013: labels by accession, and a derived label's provenance
    ("accession_pseudo", "text"), ("labeler", "jsonb"), ("evidence", "jsonb"),
)  # fmt: skip


def _inference_row(event: InferenceEvent, record: Record) -> tuple[object, ...]:
    # Plain dicts: the jsonb columns' dumper (set_types) encodes them with orjson.
    s, pos = event.study, record.position
    return (
        event.event_id, event.content_hash, event.model_name, event.model_version, event.site,
        event.occurred_at, s.study, s.series, s.sop, s.accession, s.patient, event.image_ref,
        dict(event.dicom), dict(event.scores), dict(event.thresholds),
        list(event.embedding) if event.embedding is not None else None, event.latency_ms,
        dict(event.extra), pos.topic, pos.partition, pos.offset,
    )  # fmt: skip


def _label_row(event: LabelEvent, record: Record) -> tuple[object, ...]:
    pos, study = record.position, event.study
    # A label by accession alone: the placeholder migration 0013 resolves when labels are read.
    study_pseudo = study.study if study.study is not None else f"accession:{study.accession}"
    labeler = event.labeler
    return (
        event.event_id, event.content_hash, event.model_name, study_pseudo,
        dict(event.labels), event.source, event.occurred_at, dict(event.extra),
        pos.topic, pos.partition, pos.offset, study.accession,
        {"name": labeler.name, "version": labeler.version, "fingerprint": labeler.fingerprint}
        if labeler is not None else None,
        {k: {"start": s.start, "end": s.end, "sha256": s.sha256} for k, s in event.evidence.items()},
    )  # fmt: skip


_INTERACTION_COLUMNS = (
    ("event_id", "text"), ("content_hash", "text"), ("model_name", "text"),
    ("model_version", "text"), ("study_pseudo", "text"), ("accession_pseudo", "text"),
    ("action", "text"), ("viewed", "bool"), ("time_to_read_s", "float8"), ("user_role", "text"),
    ("occurred_at", "timestamptz"), ("kafka_topic", "text"), ("kafka_partition", "int4"),
    ("kafka_offset", "int8"),
)  # fmt: skip


def _interaction_row(event: InteractionEvent, record: Record) -> tuple[object, ...]:
    pos, study = record.position, event.study
    # By accession alone: the same placeholder as a label's, resolved when read (0013, 0015).
    study_pseudo = study.study if study.study is not None else f"accession:{study.accession}"
    return (
        event.event_id, event.content_hash, event.model_name, event.model_version, study_pseudo,
        study.accession, event.action, event.viewed, event.time_to_read_s, event.user_role,
        event.occurred_at, pos.topic, pos.partition, pos.offset,
    )  # fmt: skip


def _first_of_each(
    items: Sequence[tuple[E, Record]],
) -> tuple[list[tuple[E, Record]], list[DeadLetter]]:
    """Split a batch into first occurrences and conflicting in-batch repeats of an event_id."""
    seen: dict[str, str] = {}
    firsts: list[tuple[E, Record]] = []
    conflicts: list[DeadLetter] = []
    for event, record in items:
        if event.event_id not in seen:
            seen[event.event_id] = event.content_hash
            firsts.append((event, record))
        elif seen[event.event_id] != event.content_hash:
            conflicts.append(_conflict(event, record, "in the same batch"))
    return firsts, conflicts


class IngestStore:
    """Writes batches on one connection; the caller owns retry and reconnection."""

    def __init__(self, conn: psycopg.Connection, pseudonym: Pseudonymiser) -> None:
        self._conn = conn
        self._pseudonym = pseudonym
        # orjson serialises the jsonb columns several times faster than json (hot path).
        set_json_dumps(orjson.dumps, conn)
        use_fast_float4_arrays(conn)  # embeddings: one numpy call per row, not one per value
        # Session temp tables shaped like the targets; emptied at each commit.
        with conn.transaction():
            for table in ("inferences", "labels", "interactions"):
                conn.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS incoming_{table} "
                    f"(LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
                )

    def _copy_and_insert(
        self, table: str, columns: Sequence[tuple[str, str]], rows: list[tuple[object, ...]]
    ) -> tuple[int, set[str]]:
        """COPY rows in, insert the new ones; return (inserted, ids stored with other content)."""
        if not rows:
            return 0, set()
        cols = ", ".join(name for name, _ in columns)
        cur = self._conn.cursor()
        with cur.copy(f"COPY incoming_{table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([kind for _, kind in columns])
            for row in rows:
                copy.write_row(row)
        inserted = cur.execute(
            f"""WITH ins AS (
                    INSERT INTO {table} ({cols}) SELECT {cols} FROM incoming_{table}
                    ON CONFLICT (event_id) DO NOTHING RETURNING 1)
                SELECT count(*) FROM ins"""
        ).fetchone()
        assert inserted is not None
        if inserted[0] == len(rows):
            return len(rows), set()  # every row new (the common case): nothing to compare
        # Some event_id was stored before (a replay, or a conflict). Our own rows are stored
        # now with their own hash, so a different hash is an earlier batch's: a true conflict.
        found = cur.execute(
            f"""SELECT array(SELECT i.event_id FROM incoming_{table} i
                             JOIN {table} e USING (event_id)
                             WHERE e.content_hash <> i.content_hash)"""
        ).fetchone()
        assert found is not None
        return int(inserted[0]), set(found[0])

    def write(self, batch: Batch) -> WriteOutcome:
        """Store the batch in one transaction; raises psycopg errors for the caller to retry."""
        inferences, dup_inf = _first_of_each(batch.inferences)
        labels, dup_lab = _first_of_each(batch.labels)
        interactions, dup_int = _first_of_each(batch.interactions)
        dead = list(batch.dead_letters) + dup_inf + dup_lab + dup_int
        # Inside the caller's transaction (the worker's, which holds the post-write stages
        # too) no savepoint is needed: two round trips fewer per batch.
        in_caller = self._conn.info.transaction_status != pq.TransactionStatus.IDLE
        with contextlib.nullcontext() if in_caller else self._conn.transaction():
            n_inf, conflict_inf = self._copy_and_insert(
                "inferences", _INFERENCE_COLUMNS, [_inference_row(e, p) for e, p in inferences]
            )
            n_lab, conflict_lab = self._copy_and_insert(
                "labels", _LABEL_COLUMNS, [_label_row(e, p) for e, p in labels]
            )
            dead += [
                _conflict(e, r, "already stored")
                for e, r in inferences
                if e.event_id in conflict_inf
            ]
            dead += [
                _conflict(e, r, "already stored") for e, r in labels if e.event_id in conflict_lab
            ]
            n_int, conflict_int = self._copy_and_insert(
                "interactions", _INTERACTION_COLUMNS,
                [_interaction_row(e, p) for e, p in interactions],
            )  # fmt: skip
            dead += [_conflict(e, r, "already stored") for e, r in interactions
                     if e.event_id in conflict_int]  # fmt: skip
            if dead:
                self._conn.cursor().executemany(
                    """INSERT INTO dead_letters (kafka_topic, kafka_partition, kafka_offset, reason,
                           message, payload_sha256, payload_size, payload_redacted)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING""",
                    [
                        (
                            d.position.topic,
                            d.position.partition,
                            d.position.offset,
                            str(d.reason),
                            d.safe_message(),
                            hashlib.sha256(d.raw).hexdigest(),
                            len(d.raw),
                            d.redacted_payload(self._pseudonym),
                        )  # fmt: skip
                        for d in dead
                    ],
                )
            counters.batch_written(self._conn, batch)  # the batch timer, in this transaction
        return WriteOutcome(n_inf, n_lab, tuple(dead), n_int)


def _conflict(
    event: InferenceEvent | LabelEvent | InteractionEvent, record: Record, where: str
) -> DeadLetter:
    return DeadLetter(
        record,
        Reason.DUPLICATE_CONFLICT,
        f"event_id {where} with different content; the first is kept",
    )

"""Labels that name their study by accession alone join their inference in PostgreSQL.

Through the real write path (monitor.ingest.batch_store.IngestStore, migration 0013) and the
real join (monitor.performance.watch.load_studies over current_labels): a label by accession
stored before its inference and one stored after both join; a later read by accession
supersedes an earlier read by UID of the same study; the raw accession, planted as a marker,
is nowhere in the database; the derived label's provenance (labeler, evidence) is stored.
End to end: events published with collectors.publisher through the embedded broker and
collected by the worker land joined.
"""

from __future__ import annotations

import json

import psycopg
from conftest import kafka

from collectors.events import INFERENCE_SCHEMA, LABEL_SCHEMA, parse_record
from collectors.pseudonym import Pseudonymiser
from collectors.publisher import EventPublisher
from monitor.ingest.batch_store import Batch, IngestStore, Position, Record
from monitor.ingest.worker import IngestWorker, WorkerConfig
from monitor.performance import watch

KEY = b"label-accession-test-key-0123"
P = Pseudonymiser(KEY)
MARKER = "ACC-PHI-MARKER-4711"  # a raw accession: must never reach PostgreSQL
FINGERPRINT = "0f" * 32


def inference(i: int, accession: str, *, at: str = "2026-11-28T10:15:00Z") -> dict:
    return {"schema": INFERENCE_SCHEMA, "event_id": f"inf-{i}", "occurred_at": at,
            "model": {"name": "cxr"}, "study": {"study_uid": f"1.2.826.0.9.{i}", "accession": accession},
            "prediction": {"scores": {"pneumothorax": 0.9}}}  # fmt: skip


def label_by_accession(n: str, accession: str, value: int, *, at: str) -> dict:
    return {"schema": LABEL_SCHEMA, "event_id": f"lab-{n}", "occurred_at": at,
            "model": {"name": "cxr"}, "study": {"accession": accession},
            "labels": {"pneumothorax": value}, "source": "report-labeler",
            "labeler": {"name": "negex", "version": "1.0", "fingerprint": FINGERPRINT},
            "evidence": {"pneumothorax": {"start": 10, "end": 42, "sha256": "ab" * 32}}}  # fmt: skip


def store(conn: psycopg.Connection, *docs: dict) -> None:
    batch = Batch()
    for offset, doc in enumerate(docs):
        raw = json.dumps(doc).encode()
        schema = doc["schema"]
        event = parse_record(raw, default_schema=schema, pseudonym=P, max_bytes=1 << 20)
        record = Record(Position("t", 0, offset), raw)
        (batch.labels if schema == LABEL_SCHEMA else batch.inferences).append((event, record))  # type: ignore[arg-type]
    outcome = IngestStore(conn, P).write(batch)
    assert not outcome.dead_letters, outcome.dead_letters


def joined(conn: psycopg.Connection) -> dict[str, dict | None]:
    return {s.event_id: s.labels for s in watch.load_studies(conn, "cxr")}


def test_a_label_by_accession_joins_whether_it_arrives_before_or_after(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        # Before: the report is read (and labelled) before the model's result is stored.
        store(conn, label_by_accession("early", MARKER, 1, at="2026-11-28T11:00:00Z"))
        store(conn, inference(1, MARKER))
        # After: the usual order.
        store(conn, inference(2, "ACC-2"))
        store(conn, label_by_accession("late", "ACC-2", 0, at="2026-11-28T12:00:00Z"))
        store(conn, inference(3, "ACC-3"))  # never read
        assert joined(conn) == {"inf-1": {"pneumothorax": 1}, "inf-2": {"pneumothorax": 0},
                                "inf-3": None}  # fmt: skip
        row = conn.execute(
            "SELECT study_pseudo, accession_pseudo, labeler, evidence FROM labels"
            " WHERE event_id = 'lab-early'"
        ).fetchone()
        assert row is not None
        assert row[0] == "accession:" + P("accession", MARKER) and row[1] == P("accession", MARKER)
        assert row[2] == {"name": "negex", "version": "1.0", "fingerprint": FINGERPRINT}
        assert row[3] == {"pneumothorax": {"start": 10, "end": 42, "sha256": "ab" * 32}}
        # The inference path stores the same pseudonym: that is what the join matches.
        (inf_acc,) = conn.execute(
            "SELECT accession_pseudo FROM inferences WHERE event_id = 'inf-1'"
        ).fetchone() or (None,)
        assert inf_acc == row[1]
        # Label coverage counts both: the label that arrived after its inference (0013) and
        # the one that arrived before, folded in when its inference came (0016).
        (labelled,) = conn.execute(
            "SELECT coalesce(sum(labelled_inferences), 0) FROM label_coverage_counts"
        ).fetchone() or (0,)
        assert labelled == 2
        dump = "".join(str(r) for t in ("labels", "inferences", "label_coverage_studies")
                       for r in conn.execute(f"SELECT * FROM {t}").fetchall())  # fmt: skip
        assert MARKER not in dump and "ACC-2" not in dump


def test_a_later_read_by_accession_supersedes_an_earlier_read_by_uid(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        store(conn, inference(7, "ACC-7"))
        by_uid = {"schema": LABEL_SCHEMA, "event_id": "lab-uid", "occurred_at": "2026-11-28T11:00:00Z",
                  "model": {"name": "cxr"}, "study": {"study_uid": "1.2.826.0.9.7"},
                  "labels": {"pneumothorax": 0}}  # fmt: skip
        store(conn, by_uid)
        store(conn, label_by_accession("corr", "ACC-7", 1, at="2026-11-29T09:00:00Z"))
        assert joined(conn) == {"inf-7": {"pneumothorax": 1}}
        conn.commit()
        assert watch.sync_label_corrections(conn) == 1
        (study,) = conn.execute("SELECT study_pseudo FROM label_corrections").fetchone() or (None,)
        assert study == P("study_uid", "1.2.826.0.9.7")


def test_published_events_are_collected_and_joined_end_to_end(settings) -> None:
    settings_key = settings.pseudonym_key.encode()
    with EventPublisher(settings.kafka_bootstrap, settings.label_topic,
                        default_schema=LABEL_SCHEMA) as labels:  # fmt: skip
        labels.publish(label_by_accession("e2e", "ACC-E2E", 1, at="2026-11-28T11:00:00Z"))
    with EventPublisher(settings.kafka_bootstrap, settings.inference_topic) as inferences:
        inferences.publish(inference(42, "ACC-E2E"))
    config = WorkerConfig(
        kafka=kafka(settings), database_url=settings.database_url,
        inference_topic=settings.inference_topic, label_topic=settings.label_topic,
        deadletter_topic=settings.deadletter_topic, max_event_bytes=1 << 20,
        batch_size=settings.batch_size, poll_timeout_ms=settings.poll_timeout_ms,
    )  # fmt: skip
    stats = IngestWorker(config, Pseudonymiser(settings_key)).run(until_idle=2)
    assert (stats.inferences, stats.labels) == (1, 1)
    with psycopg.connect(settings.database_url) as conn:
        assert joined(conn) == {"inf-42": {"pneumothorax": 1}}
        assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)

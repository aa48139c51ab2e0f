"""Interaction events land in PostgreSQL (migration 0015) idempotently, counted, without PHI.

Through the real write path (monitor.ingest.batch_store.IngestStore): a replay stores nothing
twice and counts nothing twice; the same event_id with other content is a conflict dead
letter; an interaction by accession is stored with migration 0013's placeholder and resolves
to the model's study; the counters (ingest_counts kind 'interaction', interaction_counts,
the time_to_read histogram) equal the table, also after `radwatch_rebuild_counters`.
End to end: events published on the interactions topic through the embedded broker are
collected by the worker, a bad one dead-lettered with its reason.
"""

from __future__ import annotations

import json
from dataclasses import replace

import psycopg
from conftest import kafka, produce

from collectors.event_types import INTERACTION_SCHEMA
from collectors.events import INFERENCE_SCHEMA, parse_record
from collectors.kafka_io import ensure_topics
from collectors.pseudonym import Pseudonymiser
from monitor.ingest.batch_store import Batch, IngestStore, Position, Record
from monitor.ingest.worker import IngestWorker, WorkerConfig

KEY = b"interactions-store-test-key-0123"
P = Pseudonymiser(KEY)
MARKER = "ACC-PHI-MARKER-5150"  # a raw accession: must never reach PostgreSQL


def interaction(n: int, *, study: dict, action: str = "viewed", ttr: float | None = 30.0) -> dict:
    doc = {"schema": INTERACTION_SCHEMA, "event_id": f"int-{n}",
           "occurred_at": "2026-11-28T11:00:00Z", "model": {"name": "cxr"}, "study": study,
           "action": action, "user_role": "resident"}  # fmt: skip
    if ttr is not None:
        doc["time_to_read_s"] = ttr
    return doc


def inference(i: int, accession: str) -> dict:
    return {"schema": INFERENCE_SCHEMA, "event_id": f"inf-{i}", "occurred_at": "2026-11-28T10:15:00Z",
            "model": {"name": "cxr"}, "study": {"study_uid": f"1.2.826.0.9.{i}", "accession": accession},
            "prediction": {"scores": {"pneumothorax": 0.9}}}  # fmt: skip


def store(conn: psycopg.Connection, *docs: dict, offset: int = 0):
    batch = Batch()
    for k, doc in enumerate(docs):
        raw = json.dumps(doc).encode()
        event = parse_record(raw, default_schema=doc["schema"], pseudonym=P, max_bytes=1 << 20)
        record = Record(Position("t", k % 4, offset + k), raw)
        target = batch.interactions if doc["schema"] == INTERACTION_SCHEMA else batch.inferences
        target.append((event, record))  # type: ignore[arg-type]
    return IngestStore(conn, P).write(batch)


def counted(conn: psycopg.Connection) -> tuple:
    return (
        conn.execute("SELECT coalesce(sum(events), 0) FROM ingest_counts "
                     "WHERE kind = 'interaction'").fetchone(),
        sorted(conn.execute("SELECT action, sum(events) FROM interaction_counts "
                            "GROUP BY 1").fetchall()),
        conn.execute("SELECT coalesce(sum(count), 0), coalesce(sum(sum), 0) FROM histogram_totals"
                     " WHERE series = 'time_to_read'").fetchone(),
    )  # fmt: skip


def test_interactions_are_stored_once_counted_and_resolved_by_accession(database_url: str) -> None:
    docs = [
        inference(1, MARKER),
        interaction(1, study={"accession": MARKER}, action="viewed", ttr=12.0),
        interaction(2, study={"study_uid": "1.2.826.0.9.1"}, action="accepted", ttr=40.0),
        interaction(3, study={"study_uid": "1.2.826.0.9.2"}, action="overridden", ttr=None),
    ]
    with psycopg.connect(database_url) as conn:
        first = store(conn, *docs)
        assert (first.inferences_new, first.interactions_new, first.dead_letters) == (1, 3, ())
        expected = ((3,), [("accepted", 1), ("overridden", 1), ("viewed", 1)], (2, 52.0))
        assert counted(conn) == expected
        # A replay (the same bytes again, as after a crash) stores and counts nothing.
        again = store(conn, *docs)
        assert (again.interactions_new, again.dead_letters) == (0, ())
        assert counted(conn) == expected
        # The same event_id with other content: a conflict, the first version kept.
        changed = store(conn, interaction(2, study={"study_uid": "1.2.826.0.9.1"},
                                          action="overridden"), offset=10)  # fmt: skip
        assert [d.reason for d in changed.dead_letters] == ["duplicate_conflict"]
        assert conn.execute("SELECT action FROM interactions WHERE event_id = 'int-2'"
                            ).fetchone() == ("accepted",)  # fmt: skip
        # By accession: the placeholder of migration 0013, resolved to the inference's study.
        row = conn.execute(
            """SELECT study_pseudo, accession_pseudo, user_role,
                      radwatch_label_study(model_name, study_pseudo, accession_pseudo)
               FROM interactions WHERE event_id = 'int-1'"""
        ).fetchone()
        assert row == ("accession:" + P("accession", MARKER), P("accession", MARKER), "resident",
                       P("study_uid", "1.2.826.0.9.1"))  # fmt: skip
        # The backfill gives the same counters.
        conn.execute("SELECT radwatch_rebuild_counters()")
        assert counted(conn) == expected
        dump = "".join(str(r) for t in ("interactions", "ingest_counts", "interaction_counts")
                       for r in conn.execute(f"SELECT * FROM {t}").fetchall())  # fmt: skip
        assert MARKER not in dump and "1.2.826.0.9" not in dump


def test_published_interactions_are_collected_by_the_worker(settings) -> None:
    topic = settings.inference_topic.replace(".inferences", ".interactions")
    ensure_topics(kafka(settings), [topic], 2)
    good = interaction(7, study={"study_uid": "1.2.826.0.9.7"}, action="accepted")
    del good["schema"]  # the topic names it
    bad = interaction(8, study={"study_uid": "1.2.826.0.9.8"}, action="liked")
    produce(settings, topic, [json.dumps(good).encode(), json.dumps(bad).encode()])
    config = WorkerConfig(
        kafka=kafka(settings), database_url=settings.database_url,
        inference_topic=settings.inference_topic, label_topic=settings.label_topic,
        interaction_topic=topic, deadletter_topic=settings.deadletter_topic,
        max_event_bytes=1 << 20, batch_size=settings.batch_size,
        poll_timeout_ms=settings.poll_timeout_ms,
    )  # fmt: skip
    key = settings.pseudonym_key.encode()
    stats = IngestWorker(config, Pseudonymiser(key)).run(until_idle=2)
    assert (stats.interactions, stats.dead_letters) == (1, 1)
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT event_id, action, kafka_topic FROM interactions"
                            ).fetchall() == [("int-7", "accepted", topic)]  # fmt: skip
        assert conn.execute("SELECT kafka_topic, reason FROM dead_letters").fetchall() == [
            (topic, "wrong_type")
        ]
    # The settings carry the topic too (RADWATCH_INTERACTION_TOPIC).
    assert replace(settings, interaction_topic=topic).interaction_topic == topic

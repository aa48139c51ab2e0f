"""The ingest counters of migration 0012 equal what the event tables hold, through a real
worker (broker → `IngestWorker` → PostgreSQL): after a batch with exact duplicates, a
conflicting duplicate, bad records, label corrections, a label before its inference and a
full replay by a second consumer group; and again after the migration's backfill
(`radwatch_rebuild_counters`) on the same rows. The scrape serves the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import replace

import psycopg
from conftest import kafka, produce
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors.pseudonym import Pseudonymiser
from monitor.ingest.worker import IngestWorker, WorkerConfig
from monitor.metrics import names
from monitor.metrics.scrape import DatabaseCollector
from monitor.store import counters

MODELS = ("cxr-nodule", "ct-bleed")
SITES = ("north-general", "south-clinic", None)


def inference(i: int, **overrides) -> bytes:
    doc = {
        "schema": "radwatch.inference.v1",
        "event_id": f"ev-{i}",
        "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": MODELS[i % 2], "version": "1.4.2"},
        "study": {"study_uid": f"1.2.826.0.1.{i // 3}"},  # three inferences per study
        "prediction": {"scores": {"nodule": 0.3}, "threshold": {"nodule": 0.5}},
        # 0.1 s exactly on a bucket bound (le="0.1" holds it), some none at all
        "latency_ms": [100, 40, 2500, None][i % 4],
    }  # fmt: skip
    if SITES[i % 3] is not None:
        doc["site"] = SITES[i % 3]
    if doc["latency_ms"] is None:
        del doc["latency_ms"]
    doc.update(overrides)
    return json.dumps(doc).encode()


def label(j: int, study: int, model: str) -> bytes:
    return json.dumps({
        "schema": "radwatch.label.v1", "event_id": f"lab-{j}",
        "occurred_at": "2026-11-29T09:00:00Z", "model": {"name": model},
        "study": {"study_uid": f"1.2.826.0.1.{study}"}, "labels": {"nodule": j % 2},
    }).encode()  # fmt: skip


def worker(settings, group: str) -> IngestWorker:
    config = WorkerConfig(
        kafka=replace(kafka(settings), group_id=group),
        database_url=settings.database_url,
        inference_topic=settings.inference_topic,
        label_topic=settings.label_topic,
        deadletter_topic=settings.deadletter_topic,
        max_event_bytes=4096,
        batch_size=settings.batch_size,
        poll_timeout_ms=settings.poll_timeout_ms,
    )
    return IngestWorker(config, Pseudonymiser(settings.pseudonym_key.encode()))


def truth(conn: psycopg.Connection) -> dict[str, object]:
    """What the counters must say, counted from the event tables (the pre-0012 queries)."""
    return {
        "inferences": sorted(conn.execute(
            """SELECT model_name, coalesce(site, ''), count(*),
                      extract(epoch FROM max(received_at))::float8
               FROM inferences GROUP BY 1, 2""").fetchall()),
        "labels": sorted(conn.execute(
            "SELECT model_name, count(*) FROM labels GROUP BY 1").fetchall()),
        "dead": sorted(conn.execute(
            "SELECT kafka_topic, reason, count(*) FROM dead_letters GROUP BY 1, 2").fetchall()),
        "coverage": sorted(conn.execute(
            """SELECT i.model_name, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM labels l
                      WHERE l.model_name = i.model_name AND l.study_pseudo = i.study_pseudo)),
                      (SELECT count(DISTINCT l.study_pseudo) FROM labels l
                       WHERE l.model_name = i.model_name)
               FROM inferences i GROUP BY 1""").fetchall()),
        "latency": sorted(conn.execute(
            """SELECT model_name, count(*), sum(latency_ms / 1000.0)::float8,
                      count(*) FILTER (WHERE latency_ms / 1000.0 <= 0.1)
               FROM inferences WHERE latency_ms IS NOT NULL GROUP BY 1""").fetchall()),
    }  # fmt: skip


def from_counters(conn: psycopg.Connection) -> dict[str, object]:
    read = counters.read(conn)
    models = {c.model: c for c in read.coverage}
    latency = [h for h in read.histograms if h.series == counters.MODEL_LATENCY_SERIES]
    return {
        "inferences": sorted((e.model, e.site, e.events, e.newest_received)
                             for e in read.events if e.kind == "inference"),
        "labels": sorted((e.model, e.events) for e in read.events if e.kind == "label"),
        "dead": sorted((d.topic, d.reason, d.letters) for d in read.dead_letters),
        "coverage": sorted(
            (m, models[m].labelled_inferences if m in models else 0,
             models[m].labelled_studies if m in models else 0)
            for m in {e.model for e in read.events if e.kind == "inference"}),
        "latency": sorted((h.model, h.count, h.sum, h.cumulative[h.bounds.index(0.1)])
                          for h in latency),
    }  # fmt: skip


def assert_counters_match(url: str) -> dict[str, object]:
    with psycopg.connect(url) as conn:
        expected, got = truth(conn), from_counters(conn)
    assert got["latency"] and expected["latency"]
    for key in expected:
        if key == "latency":  # sums of floats, added in another order
            for (m1, n1, s1, b1), (m2, n2, s2, b2) in zip(got[key], expected[key], strict=True):
                assert (m1, n1, b1) == (m2, n2, b2) and abs(s1 - s2) < 1e-9 * max(1.0, s2)
        else:
            assert got[key] == expected[key], key
    return expected


def test_counters_equal_table_counts_after_duplicates_dead_letters_and_replay(settings) -> None:
    n = 120
    valid = [inference(i) for i in range(n)]
    keys = [f"study-{i // 3}".encode() for i in range(n)]  # one study, one partition
    produce(settings, settings.inference_topic, valid, keys)
    # Exact duplicates (idempotent), a conflicting duplicate of ev-0 (dead letter), bad records.
    produce(settings, settings.inference_topic,
            valid[:7] + [inference(0, site="elsewhere"), b"{not json", b"[1]"],
            keys[:7] + [keys[0], b"bad", b"bad"])  # fmt: skip
    # Labels: one per study for the first 20 studies, an exact duplicate, a label for a study
    # with no inference yet, a bad label.
    labels = [label(j, j, MODELS[(3 * j) % 2]) for j in range(20)]
    labels += [labels[0], label(200, 500, MODELS[0]), b"\x80 not utf8"]
    produce(settings, settings.label_topic, labels)

    stats = worker(settings, settings.group_id).run(until_idle=3)
    assert stats.inferences == n and stats.labels == 21  # 20 + study 500
    expected = assert_counters_match(settings.database_url)
    assert {d[1] for d in expected["dead"]} >= {"duplicate_conflict", "not_json"}  # type: ignore[attr-defined]

    # Later batches: corrections (a second label of a labelled study) move nothing; a label
    # arriving after its inferences, and an inference of a study labelled before it (study
    # 500), both move coverage.
    produce(settings, settings.label_topic,
            [label(100 + j, j, MODELS[(3 * j) % 2]) for j in range(3)]
            + [label(300, 30, MODELS[0])])  # fmt: skip
    produce(
        settings,
        settings.inference_topic,
        [inference(1000, study={"study_uid": "1.2.826.0.1.500"}, model={"name": MODELS[0]})],
    )
    worker(settings, settings.group_id).run(until_idle=3)
    before_replay = assert_counters_match(settings.database_url)

    # A replay of everything by another consumer group stores nothing and counts nothing.
    again = worker(settings, settings.group_id + "-replay").run(until_idle=3)
    assert (again.inferences, again.labels) == (0, 0)
    assert assert_counters_match(settings.database_url) == before_replay

    # The migration's backfill, recounting the same rows, lands on the same numbers.
    with psycopg.connect(settings.database_url) as conn:
        counters.rebuild(conn)
    assert assert_counters_match(settings.database_url) == before_replay

    # The scrape serves them: a histogram with cumulative buckets, coverage as a share.
    registry = CollectorRegistry()
    collector = DatabaseCollector(settings.database_url)
    registry.register(collector)
    try:
        text = generate_latest(registry).decode()
    finally:
        collector.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}  # fmt: skip
    inferences_total = sum(v for (name, _), v in samples.items()
                           if name == names.INFERENCES_STORED + "_total")  # fmt: skip
    assert inferences_total == n + 1
    ingested: dict[str, float] = {}
    for (name, k), v in samples.items():
        if name == names.EVENTS_INGESTED + "_total":
            ingested[dict(k)["kind"]] = ingested.get(dict(k)["kind"], 0.0) + v
    assert ingested == {"inference": n + 1, "label": 25}  # 20 + 3 corrections + 2 later
    coverage = {dict(k)["model"]: v for (name, k), v in samples.items()
                if name == names.LABEL_COVERAGE}  # fmt: skip
    labelled = {m: c for m, c, _ in before_replay["coverage"]}  # type: ignore[attr-defined]
    stored = {m: sum(r[2] for r in before_replay["inferences"] if r[0] == m)  # type: ignore[attr-defined]
              for m in MODELS}  # fmt: skip
    assert coverage == {m: labelled[m] / stored[m] for m in MODELS}
    le = {
        dict(k)["le"]: v
        for (name, k), v in samples.items()
        if name == names.MODEL_LATENCY_SECONDS + "_bucket" and dict(k)["model"] == MODELS[0]
    }
    assert le["+Inf"] == samples[(names.MODEL_LATENCY_SECONDS + "_count",
                                  (("model", MODELS[0]),))]  # fmt: skip
    assert list(le.values()) == sorted(le.values())  # cumulative

"""The interaction section of /metrics (monitor.metrics.interaction_section) on seeded rows.

Events go through the real parser and write path (IngestStore, migration 0015's triggers);
the section then reads the counters, the 30-day rates, the time-to-read histogram and the
"AI-positive study never viewed" count. The seeded case names each rule of that count: a
positive viewed (by UID, by accession), a positive never viewed, a positive dismissed unseen,
a negative, a positive under its own higher threshold, one inside the 24-hour grace and one
older than the 7-day window.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from collectors.event_types import INTERACTION_SCHEMA
from collectors.events import INFERENCE_SCHEMA, parse_record
from collectors.pseudonym import Pseudonymiser
from monitor.ingest.batch_store import Batch, IngestStore, Position, Record
from monitor.metrics import interaction_section as section

P = Pseudonymiser(b"interaction-metrics-test-key-012")
NOW = datetime.now(UTC)


def at(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def inference(name: str, score: float, *, hours_ago: float = 48, model: str = "cxr",
              threshold: float | None = None, accession: str | None = None) -> dict:  # fmt: skip
    study: dict = {"study_uid": f"1.2.826.0.7.{name}"}
    if accession:
        study["accession"] = accession
    prediction: dict = {"scores": {"nodule": 0.1, "mass": score}}
    if threshold is not None:
        prediction["threshold"] = {"mass": threshold}
    return {"schema": INFERENCE_SCHEMA, "event_id": f"inf-{name}", "occurred_at": at(hours_ago),
            "model": {"name": model}, "study": study, "prediction": prediction}  # fmt: skip


def interaction(name: str, study: dict, action: str, **extra: object) -> dict:
    return {"schema": INTERACTION_SCHEMA, "event_id": f"int-{name}", "occurred_at": at(24),
            "model": {"name": "cxr"}, "study": study, "action": action, **extra}  # fmt: skip


def seed(conn: psycopg.Connection, docs: list[dict]) -> None:
    batch = Batch()
    for k, doc in enumerate(docs):
        raw = json.dumps(doc).encode()
        event = parse_record(raw, default_schema=doc["schema"], pseudonym=P, max_bytes=1 << 20)
        target = batch.interactions if doc["schema"] == INTERACTION_SCHEMA else batch.inferences
        target.append((event, Record(Position("t", k % 4, k), raw)))  # type: ignore[arg-type]
    assert not IngestStore(conn, P).write(batch).dead_letters


DOCS = [
    inference("viewed", 0.9),  # positive, accepted by UID: seen
    inference("byacc", 0.8, accession="ACC-1"),  # positive, overridden by accession: seen
    inference("never", 0.9),  # positive, no interaction: counted
    inference("unseen", 0.7),  # positive, dismissed unseen: counted
    inference("negative", 0.2),  # negative: not counted
    inference("ownthr", 0.9, threshold=0.95),  # under its own threshold: negative
    inference("fresh", 0.9, hours_ago=2),  # inside the 24-hour grace
    inference("old", 0.9, hours_ago=24 * 10),  # outside the 7-day window
    inference("ct-neg", 0.1, model="ct"),  # a model with nothing unviewed reads 0
    interaction("a", {"study_uid": "1.2.826.0.7.viewed"}, "viewed", time_to_read_s=3),
    interaction("b", {"study_uid": "1.2.826.0.7.viewed"}, "accepted", time_to_read_s=45),
    interaction("c", {"accession": "ACC-1"}, "overridden", time_to_read_s=400),
    interaction("d", {"study_uid": "1.2.826.0.7.unseen"}, "dismissed", viewed=False),
]


def test_the_section_reads_counters_rates_histogram_and_never_viewed(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        seed(conn, DOCS)
        families = {f.name: f for f in section.interaction_section(conn)}
    rows = {name: dict(f.rows) for name, f in families.items()}
    assert rows[section.POSITIVE_NEVER_VIEWED] == {("cxr",): 2.0, ("ct",): 0.0}
    assert rows[section.INTERACTIONS] == {("cxr", "viewed"): 1, ("cxr", "accepted"): 1,
                                          ("cxr", "overridden"): 1, ("cxr", "dismissed"): 1}  # fmt: skip
    # Decisions (not views) of the last 30 days: accepted, overridden, dismissed.
    assert rows[section.INTERACTION_DECISIONS] == {("cxr",): 3}
    assert rows[section.INTERACTION_ACCEPTANCE] == {("cxr",): 1 / 3}
    assert rows[section.INTERACTION_OVERRIDE] == {("cxr",): 1 / 3}
    bounds, cumulative, count, total = rows[section.TIME_TO_READ_SECONDS][("cxr",)]
    assert (count, total) == (3, 448.0)
    assert dict(zip(bounds, cumulative, strict=True))[5.0] == 1  # 3 s
    assert dict(zip(bounds, cumulative, strict=True))[60.0] == 2  # and 45 s
    assert dict(zip(bounds, cumulative, strict=True))[3600.0] == 3

    class Section(Collector):
        def collect(self):  # type: ignore[no-untyped-def]
            return [f.metric() for f in families.values()]

    registry = CollectorRegistry()
    registry.register(Section())
    text = generate_latest(registry).decode()
    assert 'radwatch_positive_never_viewed{model="cxr"} 2.0' in text
    assert 'radwatch_interactions_total{action="accepted",model="cxr"} 1.0' in text
    assert 'radwatch_time_to_read_seconds_bucket{le="60.0",model="cxr"} 2.0' in text


def test_the_never_viewed_query_is_bounded_by_the_model_time_index(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        seed(conn, DOCS)
        # A year of one model's inferences (a week is 2%): the plan a large site gets.
        conn.execute(
            """INSERT INTO inferences (event_id, content_hash, model_name, occurred_at,
                   study_pseudo, scores, kafka_topic, kafka_partition, kafka_offset)
               SELECT 'bulk-' || g, 'h', 'cxr', now() - g * interval '1 hour', 's' || g,
                      '{"mass": 0.9}', 't', 0, g
               FROM generate_series(1, 24 * 365) AS g"""
        )
        conn.execute("ANALYZE inferences")
        conn.execute("ANALYZE interactions")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN " + section._NEVER_VIEWED,
            {"models": ["cxr"], "days": 7, "grace": timedelta(hours=24), "thr": 0.5},
        ).fetchall())  # fmt: skip
    # The inferences are read by the (model, occurred_at) range, never scanned whole; the
    # interactions side is probed by study and accession (indexes 0015 creates).
    assert "inferences_model_time" in plan and "Seq Scan on inferences" not in plan, plan

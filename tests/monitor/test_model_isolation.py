"""Each model judged in isolation (issue 13): a model whose drift or performance pass fails
records an error status (row, audit row, log line with the class only) and the models after
it are still evaluated; an implausible timestamp cannot move the online detector's cursor.

Streams come from tests/drift_streams.py's seeded generator (seed 5 and 6, 800 events each, reference
= first 600, window 100) written straight into `inferences`, renamed per model.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from drift_streams import CONFIG, MODEL, START, insert_stream
from psycopg.types.json import Jsonb

from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler
from monitor.performance import watch

BROKEN, HEALTHY = "a-broken-model", "b-healthy-model"  # evaluated in this (name) order


def two_models(url: str) -> None:
    for seed, name in ((5, BROKEN), (6, HEALTHY)):
        insert_stream(url, 800, seed=seed, onset=None)
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE inferences SET model_name = %s WHERE model_name = %s",
                         (name, MODEL))  # fmt: skip
            conn.commit()
            reference.build(conn, model=name, first=600, config=CONFIG, actor="test")


def status(url: str) -> dict[tuple[str, str], tuple[str, str | None, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT model_name, component, status, error_class, errors_total "
                            "FROM model_pass_status").fetchall()  # fmt: skip
    return {(m, c): (s, e, int(n)) for m, c, s, e, n in rows}


def test_a_broken_reference_fails_its_model_only(database_url, caplog):
    two_models(database_url)
    with psycopg.connect(database_url) as conn:
        # The broken model's fitted artifact no longer matches its hash: loading it raises.
        conn.execute("""UPDATE drift_reference_artifacts SET sha256 = repeat('0', 64)
                        WHERE reference_id = (SELECT id FROM drift_references
                                              WHERE model_name = %s AND active)""", (BROKEN,))  # fmt: skip
        conn.commit()
    scheduler = Scheduler(database_url, DetectionConfig(), actor="test-detect")
    assert scheduler.acquire()
    try:
        with caplog.at_level(logging.ERROR, logger="monitor.model_status"):
            run = scheduler.run_once()
            again = scheduler.run_once()
    finally:
        scheduler.release()
    assert run.failed == [BROKEN] and again.failed == [BROKEN]
    assert {w.model for w in run.windows} == {HEALTHY} and len(run.windows) == 2
    found = status(database_url)
    assert found[(BROKEN, "drift")] == ("error", "ReferenceError", 2)
    assert found[(HEALTHY, "drift")] == ("ok", None, 0)
    lines = [r.getMessage() for r in caplog.records]
    assert any(BROKEN in line and "ReferenceError" in line for line in lines), lines
    assert not any("hash mismatch" in line for line in lines)  # the class, not the message
    with psycopg.connect(database_url) as conn:
        audited = conn.execute("SELECT action, entity_id, outcome, reason FROM audit_events "
                               "WHERE action LIKE 'drift.model_%'").fetchall()  # fmt: skip
        # One row per change of status, not one per failing pass.
        assert audited == [("drift.model_failed", BROKEN, "failure", "ReferenceError")]
        windows = conn.execute("SELECT DISTINCT model_name FROM drift_windows").fetchall()
        assert windows == [(HEALTHY,)]


def test_a_failing_performance_pass_fails_its_model_only(database_url, monkeypatch):
    two_models(database_url)
    real = watch.evaluate_model

    def evaluate(studies, name, config):
        if name == BROKEN:
            raise ZeroDivisionError("a broken state")  # what a corrupt model state would do
        return real(studies, name, config)

    monkeypatch.setattr(watch, "evaluate_model", evaluate)
    with psycopg.connect(database_url) as conn:
        reports = watch.run(conn, config=watch.PerformanceConfig(
            window=100, reference_size=200))  # fmt: skip
    found = status(database_url)
    assert found[(BROKEN, "performance")] == ("error", "ZeroDivisionError", 1)
    # The healthy model was judged: evaluated, or skipped for want of labels (never failed).
    assert (HEALTHY, "performance") not in found or found[(HEALTHY, "performance")][0] == "ok"
    assert BROKEN not in [r.model for r in reports]


def test_an_event_dated_9999_does_not_move_the_online_cursor(database_url):
    insert_stream(database_url, 700, seed=5, onset=None)
    with psycopg.connect(database_url) as conn:
        reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
        # One implausible event among the stream (a typo'd year), after the reference.
        row = conn.execute("SELECT model_version, site, dicom, scores, embedding FROM "
                           "inferences ORDER BY occurred_at DESC LIMIT 1").fetchone()  # fmt: skip
        assert row is not None
        add = """INSERT INTO inferences (event_id, content_hash, model_name, model_version,
                     site, occurred_at, study_pseudo, dicom, scores, embedding, kafka_topic,
                     kafka_partition, kafka_offset)
                 VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 't', 0, %s)"""

        def insert(at: datetime, offset: int) -> None:
            eid = str(uuid.uuid4())
            conn.execute(add, (eid, eid, MODEL, row[0], row[1], at, f"late-{offset}",
                               Jsonb(row[2]), Jsonb(row[3]), row[4], offset))  # fmt: skip

        insert(datetime(9999, 12, 31, tzinfo=UTC), 10_000)
        conn.commit()
        scheduler = Scheduler(database_url, DetectionConfig(), actor="test-detect")
        assert scheduler.acquire()
        try:
            scheduler.run_once()
            cursor = conn.execute("SELECT online_at FROM drift_cursors WHERE model_name = %s",
                                  (MODEL,)).fetchone()  # fmt: skip
            assert cursor is not None and cursor[0] < datetime.now(UTC)
            conn.commit()
            # Later, plausible events are still fed to the online detector.
            last = START + timedelta(minutes=10 * 700)
            for k in range(5):
                insert(last + timedelta(minutes=k), 10_001 + k)
            conn.commit()
            scheduler.run_once()
        finally:
            scheduler.release()
        moved = conn.execute("SELECT online_at FROM drift_cursors WHERE model_name = %s",
                             (MODEL,)).fetchone()  # fmt: skip
        assert moved is not None and moved[0] == last + timedelta(minutes=4)

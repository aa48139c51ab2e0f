"""Label coverage counts a label by accession whatever the arrival order (migration 0016).

Through the real write path (monitor.ingest.batch_store.IngestStore, as the services' login)
into a real PostgreSQL: labels that name their study by accession alone are stored before
their inference (separate batches, one transaction, several inferences of the study in one
batch, an earlier inference without accession, two models, a study already labelled by UID).
After each step the counters (monitor.store.counters.read) and the ratio `radwatch metrics`
serves (monitor.metrics.scrape.ingest_section) must equal a direct join over label_history
and inferences; the rebuild (radwatch_rebuild_counters) must give the same counter rows as the
incremental triggers; and upgrading a database that counted placeholders repairs them.
"""

from __future__ import annotations

import json
import random
import uuid
from itertools import count

import psycopg
import pytest
from conftest import app_url

from collectors.events import INFERENCE_SCHEMA, LABEL_SCHEMA, parse_record
from collectors.pseudonym import Pseudonymiser
from monitor.ingest.batch_store import Batch, IngestStore, Position, Record
from monitor.metrics import names, scrape
from monitor.metrics.families import Family
from monitor.services import runtime
from monitor.store import counters, db

P = Pseudonymiser(b"coverage-accession-test-key-0123")
_ids = count()


def inference(model: str, study: int, accession: str | None = None) -> dict:
    s: dict[str, str] = {"study_uid": f"1.2.826.0.7.{study}"}
    if accession is not None:
        s["accession"] = accession
    return {"schema": INFERENCE_SCHEMA, "event_id": f"inf-{next(_ids)}",
            "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": model}, "study": s,
            "prediction": {"scores": {"pneumothorax": 0.9}}}  # fmt: skip


def label(model: str, *, accession: str | None = None, study: int | None = None) -> dict:
    s = {"accession": accession} if accession is not None else {"study_uid": f"1.2.826.0.7.{study}"}
    return {"schema": LABEL_SCHEMA, "event_id": f"lab-{next(_ids)}",
            "occurred_at": "2026-11-28T11:00:00Z", "model": {"name": model}, "study": s,
            "labels": {"pneumothorax": 1}}  # fmt: skip


def store(conn: psycopg.Connection, *docs: dict) -> None:
    """One batch; its inferences are stored before its labels (IngestStore's order)."""
    batch = Batch()
    for doc in docs:
        raw = json.dumps(doc).encode()
        event = parse_record(raw, default_schema=doc["schema"], pseudonym=P, max_bytes=1 << 16)
        n = next(_ids)  # spread over partitions, so over counter shards
        record = Record(Position("t", n % 7, n), raw)
        kind = batch.labels if doc["schema"] == LABEL_SCHEMA else batch.inferences
        kind.append((event, record))  # type: ignore[arg-type]
    outcome = IngestStore(conn, P).write(batch)
    assert not outcome.dead_letters, outcome.dead_letters


def truth(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    """Per model: inferences whose study has a label, and labelled studies, by a direct join
    over label_history (labels resolved to their study as the performance join reads them)."""
    rows = conn.execute(
        """SELECT model_name,
                  (SELECT count(*) FROM inferences i WHERE i.model_name = m.model_name
                      AND EXISTS (SELECT 1 FROM label_history l WHERE l.model_name = i.model_name
                                  AND l.study_pseudo = i.study_pseudo)),
                  (SELECT count(DISTINCT study_pseudo) FROM label_history l
                   WHERE l.model_name = m.model_name)
           FROM (SELECT DISTINCT model_name FROM labels) AS m ORDER BY 1"""
    ).fetchall()
    return {model: (int(li), int(ls)) for model, li, ls in rows}


def counted(conn: psycopg.Connection) -> dict[str, tuple[int, int]]:
    return {c.model: (c.labelled_inferences, c.labelled_studies)
            for c in counters.read(conn).coverage}  # fmt: skip


def served(conn: psycopg.Connection) -> dict[str, float]:
    (family,) = [f for f in scrape.ingest_section(conn) if f.name == names.LABEL_COVERAGE]
    assert isinstance(family, Family)
    return {key[0]: value for key, value in family.rows.items()}


def expected_ratio(conn: psycopg.Connection) -> dict[str, float]:
    rows = conn.execute("SELECT model_name, count(*) FROM inferences GROUP BY 1").fetchall()
    return {m: truth(conn).get(m, (0, 0))[0] / n for m, n in rows if m in truth(conn)}


def check(conn: psycopg.Connection, expect: dict[str, tuple[int, int]]) -> None:
    assert truth(conn) == expect  # the scenario is what the test says it is
    assert counted(conn) == expect
    assert served(conn) == pytest.approx(expected_ratio(conn))


def counter_rows(conn: psycopg.Connection) -> tuple[list[tuple], list[tuple]]:
    studies = conn.execute(
        "SELECT model_name, study_pseudo, inferences, labels FROM label_coverage_studies"
        " ORDER BY 1, 2"
    ).fetchall()
    totals = conn.execute(
        "SELECT model_name, sum(labelled_inferences), sum(labelled_studies)"
        " FROM label_coverage_counts GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return studies, totals


def assert_rebuild_agrees(conn: psycopg.Connection, admin_url: str) -> None:
    """The rebuild truncates (not a privilege of the services' login): run on `admin_url`."""
    incremental = counter_rows(conn)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        counters.rebuild(admin)
    assert counter_rows(conn) == incremental


@pytest.fixture
def conn(embedded, database_url: str):
    # The services' least-privileged login: the fold deletes counter rows as that user.
    with psycopg.connect(app_url(embedded, database_url), autocommit=True) as c:
        yield c


def test_a_label_stored_before_its_inference_is_counted(
    conn: psycopg.Connection, database_url: str
) -> None:
    # Separate batches: the label first, its inference later.
    store(conn, label("cxr", accession="A1"))
    check(conn, {"cxr": (0, 1)})  # a labelled placeholder, no inference yet
    store(conn, inference("cxr", 1, "A1"))
    check(conn, {"cxr": (1, 1)})
    # A second inference of the same accession, later: the study is labelled already.
    store(conn, inference("cxr", 1, "A1"))
    check(conn, {"cxr": (2, 1)})

    # One transaction, the label's batch first; the inference's batch holds three of the
    # study's inferences, and the study has one earlier inference stored without accession.
    store(conn, inference("cxr", 2))
    with conn.transaction():
        store(conn, label("cxr", accession="A2"), label("cxr", accession="A2"))  # a correction
        store(conn, inference("cxr", 2, "A2"), inference("cxr", 2, "A2"),
              inference("cxr", 2, "A2"), inference("cxr", 3, "A3"))  # fmt: skip
    check(conn, {"cxr": (6, 2)})

    # The same batch (IngestStore stores its inference before its label: 0013 resolves it).
    store(conn, inference("cxr", 4, "A4"), label("cxr", accession="A4"))
    check(conn, {"cxr": (7, 3)})

    # A study labelled by UID already, then by accession before its inference: one study.
    store(conn, label("cxr", study=5))
    store(conn, label("cxr", accession="A5"))
    check(conn, {"cxr": (7, 5)})  # the UID's study and the placeholder, until it is known
    store(conn, inference("cxr", 5, "A5"), inference("cxr", 6, "A6"))
    check(conn, {"cxr": (8, 4)})
    assert_rebuild_agrees(conn, database_url)


def test_two_models_fold_their_own_placeholders(
    conn: psycopg.Connection, database_url: str
) -> None:
    # The same accession labelled for two models before either inference; one batch brings
    # both models' inferences, and a third model's inference of it, which has no label.
    store(conn, label("cxr", accession="B1"), label("ct", accession="B1"),
          label("ct", accession="B2"))  # fmt: skip
    check(conn, {"ct": (0, 2), "cxr": (0, 1)})
    store(conn, inference("cxr", 11, "B1"), inference("ct", 11, "B1"),
          inference("ct", 11, "B1"), inference("mri", 11, "B1"))  # fmt: skip
    check(conn, {"ct": (2, 2), "cxr": (1, 1)})
    assert conn.execute(
        "SELECT count(*) FROM label_coverage_studies WHERE study_pseudo LIKE 'accession:%'"
    ).fetchone() == (1,)  # B2's placeholder only: no inference of it yet
    assert_rebuild_agrees(conn, database_url)


def test_random_arrival_orders_agree_with_the_join_and_the_rebuild(
    conn: psycopg.Connection, database_url: str
) -> None:
    # Seed 20260, 12 studies over 2 models, 120 events (inferences with or without an
    # accession, labels by UID or by accession) in random order and random batches of 1-6.
    # Exact: counters equal the join after every batch, and the rebuild's rows at the end.
    rng = random.Random(20260)
    events = []
    for _ in range(120):
        model, study = rng.choice(("cxr", "ct")), rng.randrange(12)
        accession = f"R{study}"
        roll = rng.random()
        if roll < 0.45:
            events.append(inference(model, study, accession if rng.random() < 0.8 else None))
        elif roll < 0.8:
            events.append(label(model, accession=accession))
        else:
            events.append(label(model, study=study))
    while events:
        size = rng.randint(1, 6)
        batch, events = events[:size], events[size:]
        store(conn, *batch)
        assert counted(conn) == truth(conn)
    assert served(conn) == pytest.approx(expected_ratio(conn))
    assert_rebuild_agrees(conn, database_url)


def test_a_label_and_its_inference_committed_at_once_wait_for_the_rebuild(
    embedded, conn: psycopg.Connection, database_url: str
) -> None:
    # The race 0016 states: two workers, each transaction blind to the other's row. The
    # placeholder stays counted (coverage undercounts) until the rebuild folds it.
    other_url = app_url(embedded, database_url)
    with psycopg.connect(other_url, autocommit=True) as other, conn.transaction():
        store(conn, inference("cxr", 31, "C1"))  # no placeholder yet: nothing to fold
        with other.transaction():
            store(other, label("cxr", accession="C1"))  # the inference is not visible
    assert truth(conn) == {"cxr": (1, 1)}
    assert counted(conn) == {"cxr": (0, 1)}
    with psycopg.connect(database_url, autocommit=True) as admin:
        counters.rebuild(admin)
    assert counted(conn) == truth(conn)


def test_upgrading_repairs_placeholders_counted_before(
    embedded, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A database migrated up to 0015 and used there: its placeholders are counted as 0013 did.
    name, server = "t_" + uuid.uuid4().hex[:12], embedded.owner_database_url
    assert server is not None
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    owner = server.rsplit("/", 1)[0] + "/" + name
    shipped = db.migrations()
    monkeypatch.setattr(db, "migrations", lambda: [m for m in shipped if m.version < 16])
    runtime.migrate_schema(owner)
    with psycopg.connect(app_url(embedded, owner), autocommit=True) as conn:
        store(conn, label("cxr", accession="U1"), label("cxr", study=21))
        store(conn, inference("cxr", 21, "U1"))
        assert counted(conn) == {"cxr": (1, 2)}  # the placeholder, and no coverage for it
        monkeypatch.setattr(db, "migrations", lambda: shipped)
        runtime.migrate_schema(owner)
        assert counted(conn) == truth(conn) == {"cxr": (1, 1)}

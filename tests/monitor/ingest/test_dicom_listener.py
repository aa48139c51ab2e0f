"""`radwatch dicom-listen` against the embedded broker and PostgreSQL, fed by dcmtk's storescu.

Synthetic CT images and a highdicom-built TID 1500 SR go in; a contract-v1 inference event
comes out on Kafka and lands in PostgreSQL through the normal collector. A malformed SR, an
SR whose images never arrive, and an unknown calling AE are each handled; planted PHI markers
appear in no log record and no file name.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import select
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pydicom.config
import pytest
from conftest import REPO, kafka, radwatch_cmd, settings_env
from dicom_sr_objects import PHI_MARKERS, ct_series, measurement_sr
from prometheus_client import REGISTRY
from pydicom.dataset import Dataset
from support import free_port

from collectors.errors import Reason
from collectors.events import InferenceEvent, parse_record
from collectors.kafka_io import make_consumer
from collectors.pseudonym import Pseudonymiser
from collectors.publisher import PublishError
from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.ingest.dicom_listener import DicomListener, KafkaResultPublisher, ListenerConfig
from monitor.ingest.worker import IngestWorker, WorkerConfig

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")


@pytest.fixture(autouse=True)
def _restore_library_logging() -> Iterator[None]:
    """The listener quiets its libraries process-wide (their logs quote identifiers); the
    rest of the test session gets them back as they were."""
    names = ("pynetdicom", "highdicom", "kafka", "pydicom")
    levels = {name: logging.getLogger(name).level for name in names}
    mode = pydicom.config.settings.reading_validation_mode
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    pydicom.config.settings.reading_validation_mode = mode


@pytest.fixture
def listen(settings: Settings, caplog: pytest.LogCaptureFixture) -> Iterator:
    """Start a listener on a free loopback port; yields a function that starts one."""
    caplog.set_level(logging.DEBUG)
    started: list[tuple[DicomListener, KafkaResultPublisher]] = []

    def start(**overrides) -> tuple[DicomListener, int]:
        config = ListenerConfig(image_root=Path(settings.image_roots or ""), port=0, **overrides)
        publisher = KafkaResultPublisher.connect(
            settings.kafka_bootstrap or "", settings.inference_topic, settings.deadletter_topic
        )
        listener = DicomListener(config, Pseudonymiser(settings.key_bytes()), publisher)
        started.append((listener, publisher))
        return listener, listener.start()

    yield start
    for listener, publisher in started:
        listener.stop()
        publisher.close()


def write(tmp_path: Path, datasets: list[Dataset]) -> list[str]:
    folder = tmp_path.parent / f"send-{uuid.uuid4().hex[:8]}"  # outside the image root
    folder.mkdir()
    paths = []
    for i, ds in enumerate(datasets):
        path = folder / f"{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    return paths


def storescu(
    port: int, files: list[str], calling: str = "ORCHESTRATOR", *flags: str
) -> subprocess.CompletedProcess:
    # -R: propose only the files' SOP classes (the default list lacks Comprehensive 3D SR).
    return subprocess.run(
        ["storescu", "-R", *flags, "-aet", calling, "-aec", "RADWATCH", "127.0.0.1", str(port), *files],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def consume(settings: Settings, topic: str, n: int, timeout: float = 30.0) -> list:
    options = replace(kafka(settings), group_id=f"probe-{uuid.uuid4().hex[:8]}")
    consumer = make_consumer(options, [topic], max_poll_records=50)
    records: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < n and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


def assert_no_phi(caplog: pytest.LogCaptureFixture, root: Path, secrets: list[str]) -> None:
    """No planted marker or UID in any log record, nor in any file name under the image root."""
    text = "\n".join(r.getMessage() for r in caplog.records)
    names = "\n".join(p.name for p in root.rglob("*"))
    for secret in (*PHI_MARKERS, *secrets):
        assert secret not in text, "a log record carries an identifier"
        assert secret not in names, "a file name carries an identifier"


def uids(images: list[Dataset], sr: Dataset) -> list[str]:
    return [sr.SOPInstanceUID, sr.StudyInstanceUID, sr.SeriesInstanceUID,
            *(im.SOPInstanceUID for im in images), images[0].SeriesInstanceUID]  # fmt: skip


def test_a_result_is_published_and_lands_in_postgresql(settings, listen, tmp_path, caplog) -> None:
    listener, port = listen(calling_aets=("ORCHESTRATOR",), site="north")
    images = ct_series(2)
    sr = measurement_sr(images)
    caplog.clear()  # what building the objects logged is the test's, not the listener's
    sent = storescu(port, write(tmp_path, [*images, sr]))
    assert sent.returncode == 0, sent.stderr
    assert listener.counts == {"images": 2, "results": 1, "dead_letters": 0}

    (record,) = consume(settings, settings.inference_topic, 1)
    pseudonym = Pseudonymiser(settings.key_bytes())
    event = parse_record(record.value, default_schema="radwatch.inference.v1",
                         pseudonym=pseudonym, max_bytes=1 << 20)  # fmt: skip
    assert isinstance(event, InferenceEvent), event
    assert (event.model_name, event.model_version, event.site) == ("NoduleNet", "2.1.0", "north")
    assert event.scores == {"nodule": pytest.approx(0.83)}
    assert event.dicom["Manufacturer"] == "ScanCo"  # the scanner's, from the image
    # The image is kept under the allow-listed root, at a path of pseudonyms.
    assert event.image_uri == listener.path_for(images[0].StudyInstanceUID,
                                                images[0].SOPInstanceUID).as_uri()  # fmt: skip
    assert Path(event.image_uri.removeprefix("file://")).is_file()

    # The normal collector stores it; PostgreSQL holds pseudonyms only.
    config = WorkerConfig(
        kafka=kafka(settings), database_url=settings.database_url or "",
        inference_topic=settings.inference_topic, label_topic=settings.label_topic,
        deadletter_topic=settings.deadletter_topic, max_event_bytes=1 << 20,
        batch_size=100, poll_timeout_ms=200,
    )  # fmt: skip
    IngestWorker(config, pseudonym).run(until_idle=2)
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute("SELECT row_to_json(i)::text FROM inferences i").fetchall()
    assert len(rows) == 1 and "NoduleNet" in rows[0][0]
    for secret in (*PHI_MARKERS, *uids(images, sr)):
        assert secret not in rows[0][0]
    assert_no_phi(caplog, Path(settings.image_roots or ""), uids(images, sr))


def dead_letters(settings: Settings, n: int = 1) -> list[dict]:
    return [json.loads(r.value) for r in consume(settings, settings.deadletter_topic, n)]


def test_a_malformed_sr_is_dead_lettered_with_its_reason(
    settings, listen, tmp_path, caplog
) -> None:
    listener, port = listen()
    images = ct_series(1)
    sr = copy.deepcopy(measurement_sr(images))
    del sr.ContentSequence
    caplog.clear()
    counted = {"listener": "dicom", "outcome": "dead_letter", "reason": "sr_invalid"}
    before = REGISTRY.get_sample_value("radwatch_listener_events_total", counted) or 0.0
    storescu(port, write(tmp_path, [*images, sr]))
    (letter,) = dead_letters(settings)
    # Counted for /metrics by its reason code (radwatch_listener_events_total).
    assert REGISTRY.get_sample_value("radwatch_listener_events_total", counted) == before + 1
    assert letter["reason"] == "sr_invalid" and letter["topic"] == "dicom-listen"
    original = base64.b64decode(letter["original_b64"]).decode()
    for secret in (*PHI_MARKERS, *uids(images, sr)):
        assert secret not in original and secret not in letter["message"]
    # The SR itself is kept (for a replay) where the dead letter says, under pseudonyms.
    assert (Path(settings.image_roots or "") / json.loads(original)["stored_as"]).is_file()
    assert listener.counts["dead_letters"] == 1
    assert consume(settings, settings.inference_topic, 1, timeout=2) == []
    assert_no_phi(caplog, Path(settings.image_roots or ""), uids(images, sr))


def test_an_sr_for_images_never_received_waits_then_is_dead_lettered(
    settings, listen, tmp_path, caplog
) -> None:
    listener, port = listen(source_wait_s=1.0)
    images = ct_series(2)
    sr = measurement_sr(images)
    caplog.clear()
    began = time.monotonic()
    storescu(port, write(tmp_path, [images[0], sr]))  # the second image never comes
    assert time.monotonic() - began >= 1.0
    (letter,) = dead_letters(settings)
    assert letter["reason"] == "sr_sources_missing"
    assert "1 of 2" in letter["message"]
    assert listener.counts == {"images": 1, "results": 0, "dead_letters": 1}
    assert_no_phi(caplog, Path(settings.image_roots or ""), uids(images, sr))


def test_an_unknown_calling_ae_is_rejected(settings, listen, tmp_path) -> None:
    listener, port = listen(calling_aets=("ORCHESTRATOR",))
    images = ct_series(1)
    sent = storescu(port, write(tmp_path, images), calling="INTRUDER")
    assert sent.returncode != 0
    assert "Rejected" in sent.stdout + sent.stderr
    assert listener.counts["images"] == 0
    assert not list(Path(settings.image_roots or "").rglob("*.dcm"))


def test_no_calling_ae_list_off_loopback_is_a_configuration_error(settings) -> None:
    config = ListenerConfig(image_root=Path(settings.image_roots or ""), host="0.0.0.0")
    with pytest.raises(ConfigError, match="RADWATCH_DICOM_CALLING_AETS"):
        DicomListener(config, Pseudonymiser(settings.key_bytes()), publisher=None)  # type: ignore[arg-type]


class _BrokerGone:
    """A publisher whose broker never acknowledges (what KafkaResultPublisher raises then)."""

    def publish_inference(self, key: bytes, doc: dict) -> None:
        raise PublishError("not acknowledged by the broker: KafkaTimeoutError")

    publish_dead_letter = publish_inference


def test_success_is_answered_only_once_the_broker_acknowledged(settings, tmp_path) -> None:
    config = ListenerConfig(image_root=Path(settings.image_roots or ""), port=0)
    listener = DicomListener(config, Pseudonymiser(settings.key_bytes()), _BrokerGone())
    port = listener.start()
    try:
        images = ct_series(1)
        sent = storescu(port, write(tmp_path, [*images, measurement_sr(images)]), "ORCH", "-v")
    finally:
        listener.stop()
    # The image is kept (success); the SR is refused "out of resources" so the sender retries.
    output = sent.stdout + sent.stderr
    assert "Store Response (Success)" in output, output
    assert "Refused: OutOfResources" in output and sent.returncode != 0, output
    assert listener.counts == {"images": 1, "results": 0, "dead_letters": 0}


class _ContractRefuses:
    """A publisher whose validation refuses the event (EventPublisher's PublishError with a reason)."""

    def __init__(self) -> None:
        self.dead_letters: list[dict] = []

    def publish_inference(self, key: bytes, doc: dict) -> None:
        raise PublishError("event is 2000000 bytes, limit is 1048576", Reason.TOO_LARGE)

    def publish_dead_letter(self, doc: dict) -> None:
        self.dead_letters.append(doc)


def test_an_event_the_contract_refuses_is_dead_lettered_with_its_reason(settings, tmp_path) -> None:
    publisher = _ContractRefuses()
    config = ListenerConfig(image_root=Path(settings.image_roots or ""), port=0)
    listener = DicomListener(config, Pseudonymiser(settings.key_bytes()), publisher)
    port = listener.start()
    try:
        images = ct_series(1)
        storescu(port, write(tmp_path, [*images, measurement_sr(images)]))
    finally:
        listener.stop()
    assert [d["reason"] for d in publisher.dead_letters] == ["too_large"]
    assert listener.counts == {"images": 1, "results": 0, "dead_letters": 1}


class _BuggyListener(DicomListener):
    def _result(self, ds: Dataset, raw: bytes) -> int:
        raise RuntimeError("a bug in the mapping")


def test_an_sr_that_meets_a_bug_is_dead_lettered_as_internal_error(settings, tmp_path) -> None:
    publisher = _ContractRefuses()
    config = ListenerConfig(image_root=Path(settings.image_roots or ""), port=0)
    listener = _BuggyListener(config, Pseudonymiser(settings.key_bytes()), publisher)
    port = listener.start()
    try:
        images = ct_series(1)
        storescu(port, write(tmp_path, [*images, measurement_sr(images)]))
        # The SCP still serves: the next image is stored.
        sent = storescu(port, write(tmp_path, ct_series(1)))
    finally:
        listener.stop()
    assert [d["reason"] for d in publisher.dead_letters] == ["internal_error"]
    assert sent.returncode == 0 and listener.counts["images"] == 2


def test_the_command_serves_on_loopback_and_stops_on_sigterm(settings, tmp_path) -> None:
    env = {**settings_env(settings), "RADWATCH_DICOM_CALLING_AETS": "ORCHESTRATOR"}
    log_path = tmp_path.parent / "dicom-listen.log"  # a file: a full pipe would block the logger
    metrics_port = free_port()
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            radwatch_cmd("--verbose", "dicom-listen", "--port", "0", "--metrics-addr",
                         f"127.0.0.1:{metrics_port}"),  # DEBUG logs: no PHI there either
            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=log_file, text=True,
        )  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready and proc.stdout else ""
        assert line.startswith("listening 127.0.0.1:"), log_path.read_text()[-2000:]
        images = ct_series(1)
        sr = measurement_sr(images)
        sent = storescu(int(line.rsplit(":", 1)[1]), write(tmp_path, [*images, sr]))
        assert sent.returncode == 0, sent.stderr
        assert len(consume(settings, settings.inference_topic, 1)) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
            exposed = r.read().decode()
        assert (
            'radwatch_listener_events_total{listener="dicom",outcome="images",reason=""} 1.0'
            in exposed
        )
        assert (
            'radwatch_listener_events_total{listener="dicom",outcome="results",reason=""} 1.0'
            in exposed
        )
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    err = log_path.read_text()
    assert proc.returncode == 0, err[-2000:]
    # Even at DEBUG, the process logged no marker and no UID.
    for secret in (*PHI_MARKERS, *uids(images, sr)):
        assert secret not in out + err

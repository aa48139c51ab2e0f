"""`radwatch hl7-listen` end to end: a real MLLP client socket, the listener, the embedded broker,
the collector and PostgreSQL (monitor/ingest/report_listener.py, report_labels.py).

Checks each ACK code, that the label events on Kafka parse with the wire-contract parser and
store by pseudonymised accession, what the dead letters hold, and that the planted PHI (PID
name, MRN, birth date, a word of the report text) reaches no log, Kafka record or table.
"""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
import pytest
from conftest import REPO, kafka, settings_env
from kafka import KafkaConsumer
from report_messages import MARKERS, diagnostic_report, oru
from support import free_port

from collectors.events import parse_record
from collectors.kafka_io import make_producer
from collectors.pseudonym import Pseudonymiser
from collectors.reports_in import MllpDecoder, frame
from monitor.config import Settings
from monitor.ingest.fhir_http import FhirEndpoint
from monitor.ingest.report_labels import (
    KafkaTopicPublisher,
    ModelFindings,
    ReportLabelSink,
    SinkResources,
)
from monitor.ingest.report_listener import ListenerConfig, ReportListener
from monitor.ingest.wiring import build_worker

MODELS = (ModelFindings("cxr-nodule", ("nodule", "pleural_effusion", "pneumothorax")),)
Server = TypeVar("Server", ReportListener, FhirEndpoint)


@contextmanager
def serving(server: Server) -> Iterator[Server]:
    """`server.serve_forever()` in a thread for the block; shut down and joined after it."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)


@dataclass
class Running:
    listener: ReportListener
    sink: ReportLabelSink

    def send(self, *messages: bytes, raw: bytes | None = None) -> list[bytes]:
        """One connection: each message framed (or `raw` as is), each ACK read back."""
        return mllp_exchange(self.listener.address, messages, raw)


def mllp_exchange(address: tuple[str, int], messages: tuple[bytes, ...],
                  raw: bytes | None = None, expect: int | None = None) -> list[bytes]:  # fmt: skip
    acks: list[bytes] = []
    want = expect if expect is not None else len(messages)
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(raw if raw is not None else b"".join(frame(m) for m in messages))
        decoder = MllpDecoder()
        while len(acks) < want:
            chunk = sock.recv(65536)
            assert chunk, "the listener closed the connection before every ACK"
            acks += [f.content for f in decoder.feed(chunk) if f.content is not None]
    return acks


def msa(ack: bytes) -> list[str]:
    segments = ack.decode().rstrip("\r").split("\r")
    return [s for s in segments if s.startswith("MSA|")][0].split("|")


def err(ack: bytes) -> list[str]:
    return [s for s in ack.decode().split("\r") if s.startswith("ERR|")][0].split("|")


@pytest.fixture
def running(settings: Settings) -> Iterator[Running]:
    resources = SinkResources(settings, MODELS)
    try:
        with serving(ReportListener(resources.sink, ListenerConfig(port=0))) as listener:
            yield Running(listener, resources.sink)
    finally:
        resources.close()


def consume_all(settings: Settings, topic: str, expect: int, timeout: float = 20) -> list[bytes]:
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000, **kafka(settings).common())  # fmt: skip
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(values) < expect and time.monotonic() < deadline:
            values += [record.value for record in consumer]
    finally:
        consumer.close()
    return values


def all_database_text(url: str) -> str:
    """Every row of every table in the public schema, as text (what pg_dump would show)."""
    parts = []
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        ).fetchall()]  # fmt: skip
        for table in tables:
            parts += [r[0] for r in conn.execute(f'SELECT t::text FROM "{table}" t').fetchall()]
    return "\n".join(parts)


def test_acks_label_events_dead_letters_and_no_phi_anywhere(
    settings: Settings, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="kafka")  # as monitor.cli sets it
    final = oru(control_id="F1")
    corrected = oru("IMPRESSION: No nodule. Small right pleural effusion.", status="C",
                    control_id="C1")  # fmt: skip
    preliminary = oru(status="P", control_id="P1")
    no_accession = oru(accession="", control_id="N1")
    not_oru = oru(message_type="ADT^A08", control_id="X1")
    acks = running.send(final, corrected, preliminary, no_accession, not_oru)
    assert [msa(a)[1:3] for a in acks] == [["AA", "F1"], ["AA", "C1"], ["AA", "P1"],
                                           ["AE", "N1"], ["AR", "X1"]]  # fmt: skip
    assert err(acks[3])[2:5] == ["OBR^1^3", "101^Required field missing^HL70357", "E"]
    assert err(acks[4])[3].startswith("200^")
    # Junk that is not even a framed message: AR without a control id, and the connection lives.
    (junk_ack, after) = mllp_exchange(running.listener.address, (),
                                      raw=b"\x0bnot hl7 at all\x1c\r" + frame(final), expect=2)  # fmt: skip
    assert msa(junk_ack)[1:3] == ["AR", ""] and msa(after)[1] == "AA"

    labels = consume_all(settings, settings.label_topic, expect=3)
    # F and C, and F again (a resend: the same event id, stored once).
    assert len(labels) == 3
    pseudonym = Pseudonymiser(settings.key_bytes())
    events = [parse_record(v, default_schema="radwatch.label.v1", pseudonym=pseudonym,
                           max_bytes=65536) for v in labels]  # fmt: skip
    assert all(type(e).__name__ == "LabelEvent" for e in events), events
    first, second, resent = events
    assert first.labels == {"nodule": 1, "pleural_effusion": 0, "pneumothorax": 0}  # type: ignore[union-attr]
    assert second.labels == {"nodule": 0, "pleural_effusion": 1, "pneumothorax": 0}  # type: ignore[union-attr]
    assert resent.event_id == first.event_id  # type: ignore[union-attr]
    assert first.study.accession == pseudonym("accession", "ACC-1001")  # type: ignore[union-attr]
    doc = json.loads(labels[0])
    assert doc["source"] == "report-labeler" and doc["labeler"]["fingerprint"]
    assert set(doc["evidence"]) == {"nodule"} and len(doc["evidence"]["nodule"]["sha256"]) == 64
    assert doc["occurred_at"] == "2026-11-01T09:15:00Z"

    dead = [json.loads(v) for v in consume_all(settings, settings.deadletter_topic, expect=3)]
    assert sorted(d["reason"] for d in dead) == ["no_accession", "not_hl7", "unsupported_message"]
    assert all(d["original_b64"] == "" and d["original_bytes"] > 0 for d in dead)
    assert running.sink.snapshot()["preliminary_ignored"] == 1

    # The normal collector stores the labels (by accession pseudonym) and nothing else of them.
    stats = build_worker(settings).run(until_idle=2)
    assert stats.labels == 2  # the resend is the same event
    assert settings.database_url
    stored = all_database_text(settings.database_url)
    kafka_text = b"\n".join(labels + consume_all(settings, settings.deadletter_topic, 3)).decode()
    for marker in MARKERS:
        for where, haystack in (("PostgreSQL", stored), ("Kafka", kafka_text),
                                ("logs", caplog.text)):  # fmt: skip
            assert marker.lower() not in haystack.lower(), f"{marker!r} found in {where}"
    assert "ACC-1001" not in stored and "ACC-1001" not in caplog.text


def test_broker_failure_answers_ar_and_dead_letters_nothing(settings: Settings) -> None:
    producer = make_producer(kafka(settings), max_block_ms=500)
    pseudonym = Pseudonymiser(settings.key_bytes())
    from collectors.labeler import default_labeler

    sink = ReportLabelSink(default_labeler(), MODELS,
                           KafkaTopicPublisher(producer, settings.label_topic, timeout_s=2),
                           KafkaTopicPublisher(producer, settings.deadletter_topic),
                           pseudonym)  # fmt: skip
    with serving(ReportListener(sink, ListenerConfig(port=0))) as listener:
        producer.close(timeout=5)  # the broker connection is gone: nothing can be acknowledged
        (ack,) = mllp_exchange(listener.address, (oru(control_id="K1"),))
    assert msa(ack)[1:3] == ["AR", "K1"] and err(ack)[3].startswith("207^")
    counts = sink.snapshot()
    assert counts.get("broker_unavailable") == 1
    assert not any(k.startswith("dead_letter") for k in counts)


def _command(*args: str) -> list[str]:
    """`radwatch hl7-listen ...` as a process."""
    return [sys.executable, "-m", "monitor.cli", "hl7-listen", *args]


def start_command(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], int, str]:
    """`radwatch hl7-listen --port 0 --fhir-port 0 ARGS` once it printed where it listens:
    (the process, the MLLP port, the FHIR URL)."""
    proc = subprocess.Popen(_command("--port", "0", "--fhir-port", "0", *args), env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening 127.0.0.1:"), line + (
        proc.stderr.read() if proc.stderr else ""
    )
    return proc, int(line.rsplit(":", 1)[1]), proc.stdout.readline().split(" ", 1)[1].strip()


def test_command_listens_acks_and_stops_cleanly_on_sigterm(settings: Settings) -> None:
    env = {**settings_env(settings), "RADWATCH_FHIR_TOKEN": "fhir-token-0123456789abcdef"}
    metrics_port = free_port()
    proc, port, fhir_url = start_command(env, "--model", "cxr-nodule=nodule", "--json",
                                         "--metrics-addr", f"127.0.0.1:{metrics_port}")  # fmt: skip
    try:
        (ack,) = mllp_exchange(("127.0.0.1", port), (oru(control_id="S1"),))
        assert msa(ack)[1:3] == ["AA", "S1"]
        request = urllib.request.Request(
            fhir_url, data=json.dumps(diagnostic_report(accession="ACC-5")).encode(),
            headers={"Authorization": "Bearer fhir-token-0123456789abcdef"}, method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=30) as r:
            exposed = r.read().decode()
        # Both paths (MLLP and FHIR) through one sink: two reports, two label events.
        prefix = 'radwatch_listener_events_total{listener="reports",'
        assert prefix + 'outcome="label_events",reason=""} 2.0' in exposed, exposed[-3000:]
        assert prefix + 'outcome="final",reason=""} 2.0' in exposed
    finally:
        proc.send_signal(signal.SIGTERM)
        out, errors = proc.communicate(timeout=30)
    assert proc.returncode == 0, errors[-2000:]
    assert json.loads(out)["label_events"] == 2
    for marker in MARKERS:
        assert marker.lower() not in errors.lower()


def test_command_without_a_model_is_a_one_line_usage_error(settings: Settings) -> None:
    result = subprocess.run(_command("--port", "0"), env=settings_env(settings), cwd=REPO,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("radwatch: which model")

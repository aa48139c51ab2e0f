"""Alertmanager's webhook into the audit trail, over real HTTP and a real PostgreSQL.

The metrics server runs on a free port with the webhook enabled; an Alertmanager v4
payload (as Alertmanager sends it) is POSTed and must come back as audit rows.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from monitor.alert_webhook import PATH, AlertWebhook
from monitor.metrics_server import MetricsServer

PAYLOAD = {
    "version": "4",
    "groupKey": '{}/{team="qa"}:{alertname="RadwatchDriftDetected", model="cxr-nodule"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "qa-team",
    "groupLabels": {"alertname": "RadwatchDriftDetected", "model": "cxr-nodule"},
    "commonLabels": {"alertname": "RadwatchDriftDetected", "model": "cxr-nodule", "team": "qa"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "RadwatchDriftDetected", "model": "cxr-nodule",
                       "signal": "dicom", "stratum_kind": "scanner", "stratum_value": "ACME X2",
                       "severity": "warning", "team": "qa"},
            "annotations": {"summary": "cxr-nodule: dicom drift in scanner=ACME X2",
                            "runbook": "deploy/prometheus/runbook.md#radwatchdriftdetected"},
            "startsAt": "2026-11-28T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "3c8f5b0d9e1a2f47",
        },
        {
            "status": "resolved",
            "labels": {"alertname": "RadwatchDriftDetected", "model": "cxr-nodule",
                       "signal": "scores", "stratum_kind": "all", "stratum_value": "all"},
            "annotations": {"summary": "cxr-nodule: scores drift in all=all"},
            "startsAt": "2026-11-28T09:00:00Z",
            "endsAt": "2026-11-28T09:40:00Z",
            "fingerprint": "77aa01be22cc33dd",
        },
    ],
}  # fmt: skip


@pytest.fixture
def server(database_url: str):
    srv = MetricsServer("127.0.0.1:0", CollectorRegistry(), webhook=AlertWebhook(database_url))
    srv.start()
    yield srv
    srv.stop()


def post(server: MetricsServer, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{server.address}{PATH}", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_notification_becomes_audit_rows(server: MetricsServer, database_url: str) -> None:
    status, reply = post(server, json.dumps(PAYLOAD).encode())
    assert status == 200 and reply["recorded"] == 2
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT actor, action, entity_type, entity_id, outcome, reason, refs, detail
               FROM audit_events WHERE action = 'alert.notified' ORDER BY seq"""
        ).fetchall()
    assert [(r[0], r[2], r[3], r[4]) for r in rows] == [
        ("alertmanager", "prometheus_alert", "3c8f5b0d9e1a2f47", "firing"),
        ("alertmanager", "prometheus_alert", "77aa01be22cc33dd", "resolved"),
    ]
    first = rows[0]
    assert first[5] == "cxr-nodule: dicom drift in scanner=ACME X2"
    assert first[6]["receiver"] == "qa-team" and first[6]["alertname"] == "RadwatchDriftDetected"
    assert first[7]["labels"]["stratum_value"] == "ACME X2"
    assert first[7]["starts_at"] == "2026-11-28T10:00:00Z"


def test_bad_payload_is_rejected_and_not_recorded(server: MetricsServer, database_url: str) -> None:
    assert post(server, b"not json")[0] == 400
    assert (
        post(server, json.dumps({"version": "4", "alerts": [{"status": "odd"}]}).encode())[0] == 400
    )
    with psycopg.connect(database_url) as conn:
        n = conn.execute("SELECT count(*) FROM audit_events WHERE action = 'alert.notified'")
        assert n.fetchone() == (0,)


def test_metrics_and_health_are_served(server: MetricsServer) -> None:
    with urllib.request.urlopen(f"http://{server.address}/healthz", timeout=10) as reply:
        assert reply.read() == b"ok\n"
    with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=10) as reply:
        assert reply.status == 200


def test_real_alertmanager_notification_is_audited(server, database_url, tmp_path) -> None:
    """The Debian package's Alertmanager, running radwatch's routing with the receiver URL
    pointed at this server, notifies an alert posted to its API; the audit row appears."""
    import shutil
    import socket
    import subprocess
    import time

    import yaml
    from conftest import REPO

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "prometheus-alertmanager (Debian package) is required"
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    config["receivers"][0]["webhook_configs"][0]["url"] = f"http://{server.address}{PATH}"
    # Same routes, inhibition and receiver; only the waits shortened for a test.
    config["route"].update(group_wait="1s", group_interval="1s")
    for route in config["route"]["routes"]:
        route.update(group_wait="1s", group_interval="1s")
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < end, "alertmanager did not start"
                time.sleep(0.3)
        alert = [{"labels": {"alertname": "RadwatchDriftDetected", "model": "cxr-nodule",
                             "signal": "acquisition", "stratum_kind": "scanner",
                             "stratum_value": "NewVendor N1", "severity": "warning",
                             "team": "qa"},
                  "annotations": {"summary": "cxr-nodule: acquisition drift"}}]  # fmt: skip
        request = urllib.request.Request(base + "/api/v2/alerts", method="POST",
                                         data=json.dumps(alert).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        urllib.request.urlopen(request, timeout=10).close()
        rows: list = []
        end = time.monotonic() + 60
        while not rows and time.monotonic() < end:
            time.sleep(1)
            with psycopg.connect(database_url) as conn:
                rows = conn.execute(
                    """SELECT actor, outcome, refs, detail FROM audit_events
                       WHERE action = 'alert.notified'"""
                ).fetchall()
        assert rows, "no notification reached the webhook within 60 s"
        actor, outcome, refs, detail = rows[0]
        assert (actor, outcome, refs["receiver"]) == ("alertmanager", "firing", "qa-team")
        assert detail["labels"]["stratum_value"] == "NewVendor N1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)

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

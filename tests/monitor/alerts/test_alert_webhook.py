"""Alertmanager's webhook into the audit trail, over real HTTP and a real PostgreSQL.

The metrics server runs on a free port with the webhook enabled (bearer token TOKEN); an
Alertmanager v4 payload (as Alertmanager sends it) is POSTed and must come back as audit
rows. Callers without the token, hostile bodies and oversized notifications are refused or
cut, and the audit trail shows nothing they did not earn.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from prometheus_client import CollectorRegistry

from monitor.alerts import webhook
from monitor.alerts.webhook import PATH, AlertWebhook
from monitor.errors import ConfigError
from monitor.metrics.server import MetricsServer

TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # a test value; deployments use openssl rand -hex 32

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
    srv = MetricsServer("127.0.0.1:0", CollectorRegistry(),
                        webhook=AlertWebhook(database_url, token=TOKEN), read_timeout=2)  # fmt: skip
    srv.start()
    yield srv
    srv.stop()


def post(server: MetricsServer, body: bytes, *, authorization: str | None = f"Bearer {TOKEN}",
         ) -> tuple[int, dict]:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    request = urllib.request.Request(f"http://{server.address}{PATH}", data=body, method="POST",
                                     headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"body": json.loads(exc.read()), "headers": dict(exc.headers)}


def notified_rows(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        n = conn.execute("SELECT count(*) FROM audit_events WHERE action = 'alert.notified'")
        return int(n.fetchone()[0])


def raw_request(server: MetricsServer, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send bytes as they are (no client library fixing them up); return the whole reply."""
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


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
    assert notified_rows(database_url) == 0


@pytest.mark.parametrize("authorization", [
    None, f"Bearer {TOKEN[:-1]}x", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer", TOKEN,
])  # fmt: skip
def test_anonymous_or_wrong_token_is_refused_and_nothing_written(
    server: MetricsServer, database_url: str, authorization: str | None
) -> None:
    # The forged "resolved" notification of the security review.
    forged = {**PAYLOAD, "status": "resolved",
              "alerts": [{**PAYLOAD["alerts"][0], "status": "resolved"}]}  # fmt: skip
    status, reply = post(server, json.dumps(forged).encode(), authorization=authorization)
    assert status == 401
    assert reply["headers"]["WWW-Authenticate"].startswith("Bearer")
    assert notified_rows(database_url) == 0


def test_webhook_without_a_token_is_off(database_url: str) -> None:
    srv = MetricsServer("127.0.0.1:0", CollectorRegistry()).start()
    try:
        status, reply = post(srv, json.dumps(PAYLOAD).encode())
    finally:
        srv.stop()
    assert status == 403 and "RADWATCH_WEBHOOK_TOKEN" in reply["body"]["error"]
    assert notified_rows(database_url) == 0
    with pytest.raises(ConfigError, match="at least 16"):
        AlertWebhook(database_url, token="short")


@pytest.mark.parametrize("length_header,expected", [
    (b"Content-Length: -1\r\n", 400),
    (b"Content-Length: abc\r\n", 400),
    (b"Content-Length: 1e9\r\n", 400),
    (b"Content-Length: 300000000\r\n", 413),
    (b"Content-Length: 10\r\nContent-Length: 10\r\n", 400),
    (b"", 411),  # a body with no length
    (b"Transfer-Encoding: chunked\r\n", 411),
])  # fmt: skip
def test_body_length_is_never_trusted(server: MetricsServer, database_url: str,
                                      length_header: bytes, expected: int) -> None:  # fmt: skip
    """Answered at once from the headers (nothing buffered), even though bytes keep coming."""
    head = (b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + TOKEN.encode() + b"\r\n" + length_header + b"\r\n")  # fmt: skip
    started = time.monotonic()
    reply = raw_request(server, head + b'{"alerts": [' * 1000)
    assert reply.split(b" ", 2)[1] == str(expected).encode(), reply[:200]
    assert time.monotonic() - started < 1.5  # well inside the 2 s read timeout
    assert notified_rows(database_url) == 0


def test_body_shorter_than_its_length_is_cut_at_the_read_timeout(server: MetricsServer,
                                                                 database_url: str) -> None:  # fmt: skip
    head = (b"POST " + PATH.encode() + b" HTTP/1.1\r\nAuthorization: Bearer " + TOKEN.encode()
            + b"\r\nContent-Length: 1000\r\n\r\n{")  # fmt: skip
    started = time.monotonic()
    assert raw_request(server, head) == b""  # closed without an answer
    assert 1.5 < time.monotonic() - started < 4
    assert notified_rows(database_url) == 0


@pytest.mark.parametrize("body", [
    b"[" * 200_000,  # deep nesting: RecursionError in json
    b'{"alerts": [], "truncatedAlerts": ' + b"9" * 5000 + b"}",  # past int digit limit
    b'{"alerts": [], "truncatedAlerts": "many"}',
    b"\xff\xfe",
    b'{"alerts": [{"status": "firing", "labels": [1]}]}',
    b'{"alerts": [{"status": ["firing"]}]}',
    b'{"version": 5, "alerts": []}',
])  # fmt: skip
def test_malformed_payloads_are_400_never_500(server: MetricsServer, database_url: str,
                                              body: bytes) -> None:  # fmt: skip
    assert post(server, body)[0] == 400
    assert notified_rows(database_url) == 0


def test_odd_strings_are_stored_safely(server: MetricsServer, database_url: str) -> None:
    """Lone surrogates and NUL (which jsonb refuses) are replaced; nested values flattened."""
    alert = {"status": "firing", "fingerprint": "abc",
             "labels": {"alertname": "X\ud800", "model": "m\u0000"},
             "annotations": {"summary": {"nested": [1, 2]}}}  # fmt: skip
    body = json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()
    status, reply = post(server, body)
    assert status == 200 and reply["recorded"] == 1
    with psycopg.connect(database_url) as conn:
        (detail,) = conn.execute(
            "SELECT detail FROM audit_events WHERE action = 'alert.notified'").fetchone()  # fmt: skip
    assert detail["labels"] == {"alertname": "X?", "model": "m\ufffd"}
    assert detail["annotations"]["summary"] == '{"nested": [1, 2]}'


def test_work_per_notification_is_bounded_and_the_cut_recorded(server: MetricsServer,
                                                                database_url: str) -> None:  # fmt: skip
    """The review's 1 MB request wrote 13,754 rows; now at most MAX_ALERTS, cut strings."""
    alerts = [{"status": "firing", "fingerprint": f"fp{i}",
               "labels": {"alertname": "Flood", "i": str(i)},
               "annotations": {"summary": "s" * 2000}} for i in range(400)]  # fmt: skip
    body = json.dumps({"version": "4", "status": "firing", "alerts": alerts}).encode()
    assert len(body) < webhook.MAX_BODY_BYTES and len(alerts) > webhook.MAX_ALERTS
    status, reply = post(server, body)
    assert status == 200 and reply["recorded"] == webhook.MAX_ALERTS
    with psycopg.connect(database_url) as conn:
        details = [r[0] for r in conn.execute(
            "SELECT detail FROM audit_events WHERE action = 'alert.notified'")]  # fmt: skip
    assert len(details) == webhook.MAX_ALERTS
    assert details[0]["dropped_alerts"] == len(alerts) - webhook.MAX_ALERTS
    assert details[0]["truncated_strings"] >= webhook.MAX_ALERTS
    assert len(details[0]["annotations"]["summary"]) == webhook.MAX_STRING


def test_metrics_and_health_are_served(server: MetricsServer) -> None:
    with urllib.request.urlopen(f"http://{server.address}/healthz", timeout=10) as reply:
        assert reply.read() == b"ok\n"
    with urllib.request.urlopen(f"http://{server.address}/metrics", timeout=10) as reply:
        assert reply.status == 200


def test_real_alertmanager_notification_is_audited(server, database_url, tmp_path) -> None:
    """The Debian package's Alertmanager, running radwatch's routing with the receiver URL
    pointed at this server, notifies an alert posted to its API; the audit row appears."""
    import shutil
    import subprocess
    import time

    import yaml
    from conftest import REPO
    from support import free_port

    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "prometheus-alertmanager (Debian package) is required"
    config = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    hook = config["receivers"][0]["webhook_configs"][0]
    hook["url"] = f"http://{server.address}{PATH}"
    # The deployed config reads the token from a file: here, a file holding the test's token.
    (tmp_path / "webhook-token").write_text(TOKEN + "\n")
    hook["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "webhook-token")
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

"""Alertmanager's configuration passes amtool and notifies once per incident.

Runs the Debian package's amtool on deploy/alertmanager/alertmanager.yml, and on a copy
with the email receiver uncommented, so the example stays correct when a site enables it.
Then the Debian package's Alertmanager runs the same routing (waits shortened, receiver URL
pointed at a webhook receiver this test serves): alerts of one incident make one
notification, two incidents two, and an acknowledged incident none.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from support import free_port, wait_for

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_config_is_valid() -> None:
    result = amtool_check(CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_qa_team_receives_radwatch_alerts_through_the_webhook() -> None:
    doc = yaml.safe_load(CONFIG.read_text())
    receivers = {r["name"]: r for r in doc["receivers"]}
    hook = receivers["qa-team"]["webhook_configs"][0]
    assert hook["url"].endswith("/alertmanager/webhook")
    assert hook["send_resolved"] is True
    # radwatch refuses webhook calls without its bearer token: Alertmanager reads it from a
    # file (never inline in the config).
    auth = hook["http_config"]["authorization"]
    assert auth["type"] == "Bearer" and auth["credentials_file"].startswith("/run/secrets/")
    assert "credentials" not in auth
    assert doc["route"]["receiver"] == "qa-team"
    assert "model" in doc["route"]["group_by"]
    # Model alerts: the grouping key is the incident (deploy/prometheus/runbook.md).
    (qa,) = [r for r in doc["route"]["routes"] if r.get("matchers") == ['team="qa"']]
    assert qa["group_by"] == ["alertname", "model", "incident"]
    assert doc["inhibit_rules"], "inhibition keeps one outage from paging many times"


def test_commented_email_example_is_valid_when_enabled(tmp_path: Path) -> None:
    text = CONFIG.read_text()
    # Uncomment the `# smtp_…` and `# email_configs` blocks (their indentation is kept).
    enabled = re.sub(r"^(\s*)# (smtp_|email_configs|  - to:|    send_resolved|    headers|"
                     r"      Subject)", r"\1\2", text, flags=re.M)  # fmt: skip
    assert enabled != text and "email_configs:" in enabled
    path = tmp_path / "alertmanager.yml"
    path.write_text(enabled)
    (tmp_path / "smtp-password").write_text("x")
    path.write_text(enabled.replace("/etc/alertmanager/smtp-password",
                                    str(tmp_path / "smtp-password")))  # fmt: skip
    doc = yaml.safe_load(path.read_text())
    assert doc["receivers"][0]["email_configs"][0]["to"].startswith("imaging-ai-qa@")
    result = amtool_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


TOKEN = "5e4d3c2b1a0918273645546372819a0b"  # a test value


class Receiver(ThreadingHTTPServer):
    """A webhook receiver: keeps each POSTed notification and its Authorization header."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.posts: list[tuple[str, dict]] = []


class _Hook(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.headers.get("Authorization", ""), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[str, Receiver]]:
    """radwatch's Alertmanager routing, notifying a receiver this test serves."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "prometheus-alertmanager (Debian package) is required"
    receiver = Receiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    config = yaml.safe_load(CONFIG.read_text())
    (tmp_path / "webhook-token").write_text(TOKEN + "\n")
    receivers = {r["name"]: r for r in config["receivers"]}
    for name in ("qa-team", "governance"):  # both notify radwatch's webhook: here, this test's
        (hook,) = receivers[name]["webhook_configs"]
        hook["url"] = f"http://127.0.0.1:{receiver.server_port}/alertmanager/webhook"
        hook["http_config"]["authorization"]["credentials_file"] = str(tmp_path / "webhook-token")
    # Same routes, grouping and inhibition; only the waits shortened for a test.
    for route in [config["route"], *config["route"]["routes"]]:
        route.update(group_wait="1s", group_interval="1s")
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            urllib.request.urlopen(base + "/-/ready", timeout=2).close()
            return True
        except OSError:
            return False

    try:
        wait_for(ready, 30, "alertmanager ready",
                 details=lambda: (tmp_path / "alertmanager.log").read_text()[-2000:])  # fmt: skip
        yield base, receiver
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        receiver.shutdown()
        receiver.server_close()
        log.close()


def incident_alert(incident: str, **labels: str) -> dict:
    """A RadwatchIncident as Prometheus sends it (labels of the rule plus extra ones)."""
    return {"labels": {"alertname": "RadwatchIncident", "model": "cxr-nodule",
                       "incident": incident, "shift_type": "acquisition",
                       "root_cause_kind": "scanner", "root_cause_value": "ACME X1",
                       "severity": "warning", "team": "qa", **labels},
            "annotations": {"summary": f"cxr-nodule: incident {incident}"}}  # fmt: skip


def post(base: str, alerts: list[dict]) -> None:
    request = urllib.request.Request(base + "/api/v2/alerts", method="POST",
                                     data=json.dumps(alerts).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    urllib.request.urlopen(request, timeout=10).close()


def settled(receiver: Receiver, n: int) -> list[dict]:
    """The notifications once `n` arrived and a few group intervals brought no more."""
    wait_for(lambda: len(receiver.posts) >= n, 30, f"{n} notification(s)")
    time.sleep(4)
    assert all(auth == f"Bearer {TOKEN}" for auth, _ in receiver.posts)
    return [body for _, body in receiver.posts]


def test_one_notification_per_incident(alertmanager: tuple[str, Receiver]) -> None:
    base, receiver = alertmanager
    # 16 alert series of incident 12 (one per signal and stratum, as a per-alert rule would
    # send them): one group, one POST holding all 16.
    signals = ("dicom", "embedding", "quality", "scores", "positive_rate")
    strata = (("all", "all"), ("site", "north-general"), ("scanner", "ACME X1"))
    series = [incident_alert("12", signal=signal, stratum_kind=kind, stratum_value=value)
              for signal in signals for kind, value in strata]  # fmt: skip
    series.append(incident_alert("12", signal="online", stratum_kind="all", stratum_value="all"))
    post(base, series)
    (first,) = settled(receiver, 1)
    assert first["receiver"] == "qa-team" and first["status"] == "firing"
    assert first["groupLabels"] == {"alertname": "RadwatchIncident", "model": "cxr-nodule",
                                    "incident": "12"}  # fmt: skip
    assert len(first["alerts"]) == 16
    # A second incident (two series) is a second notification; incident 12 sends nothing new.
    post(base, [incident_alert("13", shift_type="performance", severity="critical",
                               signal=s) for s in ("sensitivity", "specificity")])  # fmt: skip
    first_again, second = settled(receiver, 2)
    assert first_again == first
    assert second["groupLabels"]["incident"] == "13" and len(second["alerts"]) == 2
    assert second["groupKey"] != first["groupKey"]


def test_an_acknowledged_incident_does_not_notify(alertmanager: tuple[str, Receiver]) -> None:
    """RadwatchIncidentAcknowledged goes to no receiver and inhibits its incident's alert;
    another incident of the same model still notifies."""
    base, receiver = alertmanager
    marker = {"labels": {"alertname": "RadwatchIncidentAcknowledged", "model": "cxr-nodule",
                         "incident": "21", "severity": "none", "team": "qa"}}  # fmt: skip
    post(base, [marker])
    time.sleep(1)  # the inhibiting alert is known before its target arrives
    post(base, [incident_alert("21"), incident_alert("22")])
    (only,) = settled(receiver, 1)
    assert only["groupLabels"]["incident"] == "22"


def test_a_stop_rule_reaches_the_governance_receiver(alertmanager: tuple[str, Receiver]) -> None:
    """RadwatchSuspendRecommended (a plan's stop rule held) notifies the governance receiver,
    once per incident; the incident's RadwatchIncident still goes to the QA team."""
    base, receiver = alertmanager
    stop = {"labels": {"alertname": "RadwatchSuspendRecommended", "model": "cxr-nodule",
                       "incident": "7", "stop_rule": "integration-fault",
                       "severity": "critical", "team": "governance"},
            "annotations": {"summary": "cxr-nodule: suspend use recommended"}}  # fmt: skip
    post(base, [stop, incident_alert("7", shift_type="integration", severity="critical")])
    posts = settled(receiver, 2)
    by_receiver = {p["receiver"]: p for p in posts}
    assert set(by_receiver) == {"governance", "qa-team"}, [p["receiver"] for p in posts]
    governance = by_receiver["governance"]
    assert governance["groupLabels"] == {"alertname": "RadwatchSuspendRecommended",
                                         "model": "cxr-nodule", "incident": "7"}  # fmt: skip
    assert len(governance["alerts"]) == 1

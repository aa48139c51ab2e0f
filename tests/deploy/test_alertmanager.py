"""Alertmanager's configuration passes amtool, including the commented email example.

Runs the Debian package's amtool on deploy/alertmanager/alertmanager.yml, and on a copy
with the email receiver uncommented, so the example stays correct when a site enables it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

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

"""The alerting rules load in Prometheus's own checker and pass their unit tests.

Runs the Debian package's promtool on deploy/prometheus: `check config`, `check rules`,
`test rules` (tests/*.test.yml state, per alert, when it fires and when it stays silent).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from monitor.metrics import names

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DEPLOY / "rules" / "radwatch.rules.yml"
RUNBOOK = DEPLOY / "runbook.md"
REQUIRED = {
    "RadwatchIncident",
    "RadwatchIncidentAcknowledged",
    "RadwatchAlertsWithoutIncident",
    "RadwatchIngestStalled",
    "RadwatchConsumerLagGrowing",
    "RadwatchDeadLetterRate",
    "RadwatchDown",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=DEPLOY)  # fmt: skip


def test_rules_are_valid() -> None:
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_is_valid() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    tests = sorted(str(p) for p in (DEPLOY / "tests").glob("*.test.yml"))
    assert tests
    result = promtool("test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_required_alert_has_for_and_runbook() -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert set(rules) >= REQUIRED
    for name, rule in rules.items():
        assert rule.get("for"), f"{name} has no for: duration"
        assert rule["annotations"].get("runbook_url"), f"{name} has no runbook"
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        headings = {line.lstrip("#").strip().lower() for line in RUNBOOK.read_text().splitlines()
                    if line.startswith("## ")}  # fmt: skip
        assert anchor in headings, f"{name}: runbook section {anchor} missing"


def test_rules_use_metric_names_from_monitor_metrics() -> None:
    """The rules and the code agree on names: each radwatch_* name in a rule is defined."""
    import re

    defined = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    used = set(re.findall(r"radwatch_[a-z_]+", RULES.read_text()))
    suffixes = ("_total", "_bucket", "_count", "_sum")
    for name in used:
        base = next((name.removesuffix(s) for s in suffixes if name.endswith(s)), name)
        assert name in defined or base in defined, f"rule uses undefined metric {name}"


def test_model_alerts_notify_per_incident_not_per_alert() -> None:
    """Only the incident rules read radwatch's alert state: no rule pages per radwatch alert
    (radwatch_alerts_open stays for the dashboards), and RadwatchIncident keeps an incident's
    identity whatever its state (the `state` label is aggregated away)."""
    doc = yaml.safe_load(RULES.read_text())
    rules = {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}
    assert not [n for n, r in rules.items() if names.ALERTS_OPEN in r["expr"]]
    assert not {"RadwatchDriftDetected", "RadwatchPerformanceDrop"} & set(rules)
    expr = rules["RadwatchIncident"]["expr"]
    assert names.INCIDENT_OPEN in expr and "model, incident" in expr and "state" not in expr


def test_every_rule_has_a_runbook_url_to_a_section_the_dashboards_share() -> None:
    """Every alerting rule carries a runbook_url into runbook.md at a section
    that exists, the same place as its `runbook` path and the dashboards' panel links."""
    from dashboards.common import RUNBOOK_URL

    doc = yaml.safe_load(RULES.read_text())
    headings = {line[3:].strip().lower() for line in RUNBOOK.read_text().splitlines()
                if line.startswith("## ")}  # fmt: skip
    rules = [r for g in doc["groups"] for r in g["rules"] if "alert" in r]
    assert rules
    for rule in rules:
        name = rule["alert"]
        annotations = rule.get("annotations") or {}
        url = annotations.get("runbook_url", "")
        assert url.startswith(RUNBOOK_URL + "#"), f"{name}: runbook_url {url!r}"
        anchor = url.split("#", 1)[1]
        assert anchor in headings, f"{name}: runbook section {anchor} missing"
        assert annotations.get("runbook", "").endswith(f"runbook.md#{anchor}"), name

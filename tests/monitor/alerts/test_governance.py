"""The plan's word on incidents (monitor/alerts/governance.py) on the real PostgreSQL: every
incident names its plan clause; an integration incident (inverted images) holds the default
plan's stop rule, is exposed as "suspend use recommended" until a named person records the
decision (audited); an approved plan without that stop rule holds none."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import run_radwatch

from monitor.alerts import governance, incidents, lifecycle
from monitor.metrics import names
from monitor.metrics.scrape import incidents_section
from monitor.plan import store
from monitor.plan.document import default_plan
from monitor.store import db

T0 = datetime(2026, 11, 7, 6, 0, tzinfo=UTC)
NOW = lifecycle.AlertPolicy(open_after=1, resolve_after=1)
INVERTED = [{"feature": "PhotometricInterpretation", "adjusted_p": 0.0, "effect_size": 0.9,
             "summary": "PhotometricInterpretation: 'MONOCHROME1' 90% of window, never seen "
                        "in reference", "new_values": ["MONOCHROME1"]}]  # fmt: skip
VENDOR = [{"feature": "Manufacturer", "adjusted_p": 0.0, "effect_size": 0.4,
           "summary": "Manufacturer: 'Zenith Medical' 40% of window, never seen in reference",
           "new_values": ["Zenith Medical"]}]  # fmt: skip


def observe(conn, model: str, stratum: str, features, hours: float = 0.0):
    kind, value = stratum.split("=", 1)
    end = T0 + timedelta(hours=hours)
    return lifecycle.observe(conn, model=model, stratum_kind=kind, stratum_value=value,
                             signal="acquisition", firing=True, window_end=end,
                             actor="test-detect", policy=NOW, enrich=lambda: {"onset": end},
                             details={"window_start": (end - timedelta(hours=4)).isoformat(),
                                      "window_end": end.isoformat(),
                                      "top_features": features})  # fmt: skip


def suspended(conn) -> list[tuple]:
    families = {f.name: f for f in incidents_section(conn)}
    return sorted(families[names.SUSPEND_RECOMMENDED].rows.items())


def test_an_integration_incident_recommends_suspension_until_someone_decides(
    database_url, settings
):
    with db.connect(database_url, autocommit=True) as conn:
        assert observe(conn, "cxr-nodule", "all=all", INVERTED)
        assert observe(conn, "mammo", "site=south-clinic", VENDOR)
        inverted, vendor = incidents.list_incidents(conn)
        assert (inverted.shift_type, inverted.plan_clause) == (
            "integration",
            "incident_types.integration",
        )
        assert inverted.plan_version == "default" and inverted.stop_rule == "integration-fault"
        assert inverted.recommended_action == default_plan("x").incident_types[
            "integration"].action  # fmt: skip
        assert (vendor.plan_clause, vendor.stop_rule) == ("incident_types.acquisition", None)
        assert "SUSPEND USE RECOMMENDED" in incidents.format_incident(inverted)
        assert suspended(conn) == [(("cxr-nodule", str(inverted.id), "integration-fault"), 1)]

        with pytest.raises(governance.DecisionError, match="holds no stop rule"):
            governance.decide(conn, vendor.id, decision="suspend", by="gov", reason="x")
        with pytest.raises(governance.DecisionError, match="--by must name"):
            governance.decide(conn, inverted.id, decision="suspend", by=" ", reason="x")

    listed = json.loads(run_radwatch(settings, "incidents", "list", "--json").stdout)
    assert {i["plan_clause"] for i in listed} == {"incident_types.integration",
                                                  "incident_types.acquisition"}  # fmt: skip
    refused = run_radwatch(settings, "incidents", "decide", str(inverted.id), "--decision",
                           "pause", "--by", "gov", "--reason", "x", check=False)  # fmt: skip
    assert refused.returncode == 2
    run_radwatch(settings, "incidents", "decide", str(inverted.id), "--decision", "suspend",
                 "--by", "ai.governance", "--reason", "PACS router sends MONOCHROME1")  # fmt: skip
    with db.connect(database_url, autocommit=True) as conn:
        decided = incidents.get(conn, inverted.id)
        assert (decided.decision, decided.decided_by) == ("suspend", "ai.governance")
        assert decided.state == "open"  # deciding is not resolving
        assert suspended(conn) == []  # the recommendation has its answer
        row = conn.execute(
            """SELECT actor, outcome, reason FROM audit_events WHERE action = 'incident.decided'
                 AND entity_id = %s""",
            (str(inverted.id),),
        ).fetchone()
        assert row == ("ai.governance", "suspend", "PACS router sends MONOCHROME1")


def test_an_approved_plan_governs_the_clause_and_its_stop_rules(database_url):
    plan = default_plan("cxr-nodule").model_copy(
        update={"version": "no-stop-rules", "stop_rules": ()}
    )
    with db.connect(database_url, autocommit=True) as conn:
        store.approve(conn, plan, by="qa.lead")
        assert observe(conn, "cxr-nodule", "all=all", INVERTED)
        (one,) = incidents.list_incidents(conn)
        assert (one.plan_version, one.stop_rule) == ("no-stop-rules", None)
        assert suspended(conn) == []

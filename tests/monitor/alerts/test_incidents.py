"""Incidents on the real embedded PostgreSQL (monitor.alerts.incidents): alerts join as they
open, acknowledge and resolve act on the incident and its alerts (each audited), an incident
resolves when its last alert does, and the seeded vendor shift of tests/drift_streams.py
(south-clinic studies from a never-seen vendor after ONSET) becomes one acquisition incident
rooted at south-clinic, acknowledged and resolved through `radwatch incidents`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from conftest import run_radwatch
from drift_streams import CONFIG, MODEL, ONSET, START, insert_stream

from monitor.alerts import incidents, lifecycle
from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler
from monitor.store import db

T0 = datetime(2026, 11, 7, 6, 0, tzinfo=UTC)
NOW = lifecycle.AlertPolicy(open_after=1, resolve_after=1)
CONTRACT = {"id", "model", "state", "root_cause", "shift_type", "summary", "onset", "opened_at",
            "alerts", "recommended_action"}  # fmt: skip


def observe(conn, stratum: str, signal: str, firing: bool, hours: float = 0.0,
            **details) -> lifecycle.AlertChange | None:  # fmt: skip
    kind, value = stratum.split("=", 1)
    end = T0 + timedelta(hours=hours)
    return lifecycle.observe(conn, model="cxr-nodule", stratum_kind=kind, stratum_value=value,
                             signal=signal, firing=firing, window_end=end, actor="test-detect",
                             details={"window_start": (end - timedelta(hours=4)).isoformat(),
                                      "window_end": end.isoformat(), **details},
                             policy=NOW, enrich=lambda: {"onset": end})  # fmt: skip


def audit(conn, entity_type: str, entity_id: int) -> list[str]:
    rows = conn.execute(
        "SELECT action FROM audit_events WHERE entity_type = %s AND entity_id = %s ORDER BY seq",
        (entity_type, str(entity_id)),
    ).fetchall()
    return [r[0] for r in rows]


def test_alerts_join_one_incident_which_people_ack_and_resolve(database_url):
    vendor = [{"feature": "Manufacturer", "adjusted_p": 0.0, "effect_size": 0.4,
               "summary": "Manufacturer: 'Zenith Medical' 40% of window, never seen in reference",
               "new_values": ["Zenith Medical"]}]  # fmt: skip
    with db.connect(database_url, autocommit=True) as conn:
        first = observe(conn, "all=all", "scores", True)
        site = observe(conn, "site=south-clinic", "acquisition", True, 2, top_features=vendor)
        assert first and site
        (one,) = incidents.list_incidents(conn)
        assert one.alerts == (first.alert_id, site.alert_id)
        assert (one.root_cause, one.shift_type) == ("site=south-clinic", "acquisition")
        assert one.summary.startswith("site south-clinic: Manufacturer: 'Zenith Medical'")
        assert audit(conn, "incident", one.id) == ["incident.opened", "incident.updated"]
        # Another site's shift two days later is another incident.
        other = observe(conn, "site=north-general", "scores", True, 48)
        assert other and len(incidents.list_incidents(conn)) == 2

        with pytest.raises(incidents.IncidentError, match="--by must name who acts"):
            incidents.acknowledge(conn, one.id, by="  ", note="x")
        taken = incidents.acknowledge(conn, one.id, by="qa.lead", note="vendor onboarding")
        assert taken.state == "acknowledged" and taken.acknowledged_by == "qa.lead"
        assert {lifecycle.get(conn, a).state for a in one.alerts} == {"acknowledged"}
        assert audit(conn, "alert", site.alert_id)[-1] == "alert.acknowledged"
        # A later alert joins the acknowledged incident, which stays acknowledged.
        late = observe(conn, "all=all", "model_embedding", True, 3)
        assert late and incidents.get(conn, one.id).alerts[-1] == late.alert_id
        assert incidents.get(conn, one.id).state == "acknowledged"

        done = incidents.resolve(conn, one.id, by="qa.lead", note="vendor validated")
        assert done.state == "resolved" and done.resolved_by == "qa.lead"
        # Its alerts are resolved too, each audited, and kept.
        for a in done.alerts:
            assert lifecycle.get(conn, a).state == "resolved"
            assert audit(conn, "alert", a)[-1] == "alert.resolved"
        assert audit(conn, "incident", one.id)[-1] == "incident.resolved"
        with pytest.raises(incidents.IncidentError, match="already resolved"):
            incidents.resolve(conn, one.id, by="qa.lead", note="again")
        with pytest.raises(incidents.IncidentError, match="no incident with id 999"):
            incidents.get(conn, 999)
        assert one.id not in [i.id for i in incidents.list_incidents(conn)]
        assert one.id in [i.id for i in incidents.list_incidents(conn, all=True)]

        # The north-general incident resolves by itself with its last alert.
        assert observe(conn, "site=north-general", "scores", False, 52) is not None
        (row,) = [i for i in incidents.list_incidents(conn, all=True) if other.alert_id in i.alerts]
        assert row.state == "resolved" and row.resolved_by == "test-detect"
        assert audit(conn, "incident", row.id)[-1] == "incident.resolved"


def test_an_alert_opened_before_incidents_existed_joins_one_when_it_fires_again(database_url):
    # An alert row from before the upgrade (incident_id NULL) would otherwise reach no one:
    # the notifying rule is per incident. Its next firing window attaches it.
    with db.connect(database_url, autocommit=True) as conn:
        opened = observe(conn, "site=south-clinic", "scores", True)
        assert opened is not None
        conn.execute("UPDATE alerts SET incident_id = NULL")
        conn.execute("DELETE FROM incidents")
        again = observe(conn, "site=south-clinic", "scores", True, 4)
        assert again is not None and again.action == "updated"
        (one,) = incidents.list_incidents(conn)
        assert one.alerts == (opened.alert_id,) and one.root_cause == "site=south-clinic"


@pytest.fixture
def stream_db(database_url: str) -> str:
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
    return database_url


def test_a_vendor_shift_is_one_acquisition_incident_acted_on_through_the_cli(stream_db, settings):
    with Scheduler(stream_db, DetectionConfig(), actor="test-detect") as scheduler:
        scheduler.run_once()
    onset_time = START + timedelta(minutes=10 * ONSET)
    with psycopg.connect(stream_db, autocommit=True) as conn:
        alerts = lifecycle.list_alerts(conn, model=MODEL)
        since = onset_time - timedelta(hours=17)  # onsets land within a window of the truth
        shifted = [a for a in alerts if a.onset is None or a.onset >= since]
        assert len(shifted) >= 3, [(a.signal, a.stratum_kind, a.stratum_value) for a in alerts]
        found = incidents.list_incidents(conn, all=True)
        # The alerts of the shift form ONE incident; an online false alarm long before the
        # onset, if any, is an incident of its own.
        (incident,) = [i for i in found if set(i.alerts) & {a.id for a in shifted}]
        assert set(incident.alerts) >= {a.id for a in shifted}
        assert (incident.root_cause, incident.shift_type) == ("site=south-clinic", "acquisition")
        assert "Zenith Medical" in incident.summary and "study-5-" not in incident.summary

    listed = json.loads(run_radwatch(settings, "incidents", "list", "--json").stdout)
    (row,) = [r for r in listed if r["id"] == incident.id]
    assert set(row) >= CONTRACT and row["state"] == "open" and row["model"] == MODEL
    assert row["alerts"] == list(incident.alerts)
    run_radwatch(settings, "incidents", "ack", str(incident.id), "--by", "qa.lead",
                 "--note", "vendor visit booked")  # fmt: skip
    out = run_radwatch(settings, "incidents", "resolve", str(incident.id), "--by", "qa.lead",
                       "--note", "vendor onboarded").stdout  # fmt: skip
    assert out.strip() == f"incident {incident.id} is now resolved ({len(incident.alerts)} alerts)"
    with psycopg.connect(stream_db, autocommit=True) as conn:
        assert audit(conn, "incident", incident.id)[-2:] == ["incident.acknowledged",
                                                           "incident.resolved"]  # fmt: skip
        actors = conn.execute(
            """SELECT DISTINCT actor FROM audit_events WHERE entity_type = 'incident'
                 AND entity_id = %s AND action IN ('incident.acknowledged', 'incident.resolved')""",
            (str(incident.id),),
        ).fetchall()
        assert actors == [("qa.lead",)]
        assert all(lifecycle.get(conn, a).state == "resolved" for a in incident.alerts)

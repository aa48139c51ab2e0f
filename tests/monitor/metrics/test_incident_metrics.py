"""Incidents as metrics: one series per unresolved incident, bounded labels, over a real
PostgreSQL migrated to 0009 (rows inserted straight into `incidents` and `alerts`).

The series is what RadwatchIncident (deploy/prometheus) pages on, so it must appear for an
open incident, keep its identity when acknowledged and disappear once resolved.
"""

from __future__ import annotations

import subprocess

import psycopg
from test_metrics import scrape

from monitor.metrics import names

SUMMARY = "scanner ACME X1 at north-general: SoftwareVersions 4.2 -> 5.0.1 since 06:15"


def insert_incident(conn: psycopg.Connection, *, kind: str = "scanner",
                    value: str = "ACME X1", shift: str = "acquisition",
                    model: str = "cxr-nodule") -> int:  # fmt: skip
    return int(conn.execute(
        """INSERT INTO incidents (model_name, state, root_cause_kind, root_cause_value,
               root_cause, shift_type, summary, recommended_action)
           VALUES (%s, 'open', %s, %s, %s, %s, %s, 'check the scanner') RETURNING id""",
        (model, kind, value, f"{kind}={value}", shift, SUMMARY),
    ).fetchone()[0])  # fmt: skip


def incidents(url: str) -> dict[str, dict[str, str]]:
    _, samples = scrape(url)
    return {s.labels["incident"]: dict(s.labels, value=s.value)
            for s in samples.get(names.INCIDENT_OPEN, [])}  # fmt: skip


def test_incident_appears_keeps_its_identity_on_ack_and_goes_when_resolved(
    database_url: str,
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        incident = insert_incident(conn)
        for signal in ("dicom", "scores", "performance"):
            conn.execute(
                """INSERT INTO alerts (model_name, stratum_kind, stratum_value, signal, state,
                       incident_id) VALUES ('cxr-nodule', 'scanner', 'ACME X1', %s, 'open', %s)""",
                (signal, incident),
            )
        # One alert outside every incident: counted, so a rule can page on it.
        conn.execute(
            """INSERT INTO alerts (model_name, stratum_kind, stratum_value, signal, state)
               VALUES ('cxr-nodule', 'site', 'south-clinic', 'quality', 'open')"""
        )
        text, samples = scrape(database_url)
        (series,) = samples[names.INCIDENT_OPEN]
        assert series.value == 1.0
        assert series.labels == {"model": "cxr-nodule", "incident": str(incident),
                                 "shift_type": "acquisition", "root_cause_kind": "scanner",
                                 "root_cause_value": "ACME X1", "state": "open"}  # fmt: skip
        # The root-cause statement is for `radwatch incidents list`, never a label.
        assert b"SoftwareVersions" not in text
        assert [(s.labels["model"], s.value) for s in samples[names.ALERTS_WITHOUT_INCIDENT]] == [
            ("cxr-nodule", 1.0)
        ]
        up = {s.labels["source"]: s.value for s in samples[names.SOURCE_UP]}
        assert up["incidents"] == 1.0
        # The per-alert detail stays for the dashboards.
        assert sum(s.value for s in samples[names.ALERTS_OPEN]) == 4.0
        result = subprocess.run(["promtool", "check", "metrics"], input=text,
                                capture_output=True, timeout=30)  # fmt: skip
        assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()

        conn.execute("UPDATE incidents SET state = 'acknowledged' WHERE id = %s", (incident,))
        assert incidents(database_url)[str(incident)]["state"] == "acknowledged"

        conn.execute("UPDATE incidents SET state = 'resolved' WHERE id = %s", (incident,))
        assert incidents(database_url) == {}


def test_incident_labels_stay_bounded(database_url: str) -> None:
    """A root cause shaped like an identifier or outside the stratum allow-list is "other";
    past the label budget the newest incidents share one `incident="other"` series that
    counts them, and the oldest keep their ids."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        uid = insert_incident(conn, value="1.2.840.113619.2.55.3.604688119")
        pseudo = insert_incident(conn, kind="patient_pseudo", value="a3f1c2d4e5f60718a3f1")
        for i in range(names.MAX_VALUES_PER_LABEL + 3):
            insert_incident(conn, kind="site", value=f"ward {i:03d}", shift="population")
    text, samples = scrape(database_url)
    by_id = {s.labels["incident"]: s for s in samples[names.INCIDENT_OPEN]}
    assert by_id[str(uid)].labels["root_cause_value"] == names.OTHER
    assert by_id[str(pseudo)].labels["root_cause_kind"] == names.OTHER
    assert by_id[str(pseudo)].labels["root_cause_value"] == names.OTHER
    for marker in (b"1.2.840.113619", b"a3f1c2d4e5f6", b"patient_pseudo"):
        assert marker not in text, marker
    assert len(by_id) == names.MAX_VALUES_PER_LABEL + 1
    other = by_id[names.OTHER]
    assert other.value == 5.0 and other.labels["root_cause_value"] == names.OTHER
    assert {str(uid), str(pseudo)} <= set(by_id)


def test_incident_ids_are_labels_however_large() -> None:
    assert names.incident_label(12) == "12"
    # bounded_label would call this a record number; an incident id is radwatch's own key.
    assert names.incident_label(1234567) == "1234567"
    for bad in ("12", "Smith^John", None, -1, True):
        assert names.incident_label(bad) == names.OTHER

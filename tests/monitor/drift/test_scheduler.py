"""End to end through PostgreSQL: reference build, windows, alerts after onset, ack/resolve, lock.

Seeded synthetic stream written straight into `inferences` (the collector is tested
elsewhere): 1,400 events, three sites; from event 1,000 a share of south-clinic studies come
from a never-seen vendor with shifted embeddings. Window 100, reference = first 600 events.
"""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
import pytest
from conftest import run_radwatch
from drift_streams import CONFIG, MODEL, ONSET, START, insert_stream

from monitor.alerts import lifecycle
from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler


@pytest.fixture
def stream_db(database_url: str) -> str:
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        info = reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
    assert info.n_events == 600
    return database_url


def test_alert_opens_after_onset_names_stratum_signal_and_lifecycle(stream_db, settings):
    url = stream_db
    scheduler = Scheduler(url, DetectionConfig(), actor="test-detect")
    assert scheduler.acquire()
    try:
        # Advisory lock: a second scheduler cannot become active, in process or via the CLI.
        other = Scheduler(url, DetectionConfig())
        assert not other.acquire()
        cli = run_radwatch(settings, "detect", "--once", check=False)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        run = scheduler.run_once()
    finally:
        scheduler.release()
    assert other.acquire()
    other.release()

    assert len(run.windows) == 8  # (1400 - 600) / 100
    onset_time = START + timedelta(minutes=10 * ONSET)
    before = [w for w in run.windows if w.end < onset_time]
    assert before and all(not w.firing or all(s == "online" for *_, s in w.firing)
                          for w in before), [w.firing for w in before]  # fmt: skip
    # Autocommit: each alert action commits at once (the CLI below runs in another process).
    with psycopg.connect(url, autocommit=True) as conn:
        found = lifecycle.list_alerts(conn, model=MODEL)
        drift_alerts = [a for a in found if a.signal != "online"]
        assert drift_alerts, "no drift alert opened after the onset"
        assert all(a.opened_at and a.last_window_end >= onset_time for a in drift_alerts)
        south = [a for a in drift_alerts if a.signal == "acquisition"
                 and (a.stratum_kind, a.stratum_value) == ("site", "south-clinic")]  # fmt: skip
        assert south, [(a.signal, a.stratum_kind, a.stratum_value) for a in drift_alerts]
        alert = south[0]
        text = json.dumps(alert.details)
        assert "Zenith Medical" in text and "never seen in reference" in text
        summaries = [f["summary"] for f in alert.details["top_features"]]
        assert any("Manufacturer" in s and "% of window" in s for s in summaries), summaries
        assert alert.details["drift_score"] > 2
        assert alert.details["atypical_ids"][0].startswith("study-5-")
        # Onset: the change point lands within one window (100 events) of the true onset.
        assert alert.onset is not None
        assert abs((alert.onset - onset_time) / timedelta(minutes=10)) <= 100, alert.onset
        # Acknowledging and resolving never add alerts.
        n_before = len(found)
        # QA workflow: acknowledge in process, resolve through the CLI (each CLI start costs
        # ~10-20 s of imports on the shared CI machine, so only one here).
        assert alert.id in [a.id for a in lifecycle.list_alerts(conn, state="open")]
        lifecycle.acknowledge(conn, alert.id, by="qa.lead", note="looking")
        assert lifecycle.get(conn, alert.id).state == "acknowledged"
        run_radwatch(settings, "alerts", "resolve", str(alert.id), "--by", "qa.lead",
                     "--note", "vendor onboarded")  # fmt: skip
        done = lifecycle.get(conn, alert.id)
        assert done.state == "resolved" and done.resolved_by == "qa.lead"
        actions = [r[0] for r in conn.execute(
            "SELECT action FROM audit_events WHERE entity_type = 'alert' AND entity_id = %s",
            (str(alert.id),)).fetchall()]  # fmt: skip
        assert actions[0] == "alert.opened" and "alert.acknowledged" in actions
        assert actions[-1] == "alert.resolved"
        # Results stored with raw and adjusted p, window bounds, reference hash, fingerprint.
        row = conn.execute(
            """SELECT count(*), count(p_adjusted), count(DISTINCT reference_hash),
                      count(DISTINCT detector_fingerprint) FROM drift_results"""
        ).fetchone()
        assert row[0] > 0 and row[1] > 0 and row[2] == 1 and row[3] == 1
        assert (
            conn.execute(
                "SELECT count(*) FROM audit_events WHERE action = 'drift.window'"
            ).fetchone()[0]
            == 8
        )
        assert len(lifecycle.list_alerts(conn, model=MODEL)) == n_before


def test_online_state_survives_restart(stream_db):
    url = stream_db
    first = Scheduler(url, DetectionConfig())
    with first:
        first.run_once()
    with psycopg.connect(url) as conn:
        t1 = conn.execute("SELECT t FROM drift_online_state").fetchone()[0]
    insert_more = 50
    with psycopg.connect(url) as conn:
        last = conn.execute("SELECT max(occurred_at) FROM inferences").fetchone()[0]
        conn.execute(
            """INSERT INTO inferences (event_id, content_hash, model_name, site, occurred_at,
                   study_pseudo, dicom, scores, embedding, kafka_topic, kafka_partition, kafka_offset)
               SELECT 'extra-' || g, 'h', %s, 'north-general', %s + g * interval '1 minute',
                      'study-x-' || g, '{"Manufacturer": "ACME"}', '{"nodule": 0.3}',
                      ARRAY(SELECT 0.0::real FROM generate_series(1, 16)), 't', 0, 10000 + g
               FROM generate_series(1, %s) g""",
            (MODEL, last, insert_more),
        )
    second = Scheduler(url, DetectionConfig())  # a fresh process: state comes from PostgreSQL
    with second:
        second.run_once()
    with psycopg.connect(url) as conn:
        t2, n_fired = conn.execute(
            """SELECT (SELECT t FROM drift_online_state),
                      (SELECT count(*) FROM drift_online_events)"""
        ).fetchone()
    # The run length continued (or restarted only because the detector fired).
    assert t2 == t1 + insert_more or n_fired > 0

"""The AI-vs-report discrepancy signal end to end over PostgreSQL (monitor/labelwatch/
discrepancy.py): a seeded synthetic stream in which one scanner's AI false positives rise
after the reference period (the Radiology Partners ICH pattern, Acad Radiol 2025); the signal
flags that scanner and no other, stores its windows and exposes them on a scrape.

Stream (seed 17): 3,300 studies, one finding (nodule, prevalence 10%), three scanners
(Acme A1, Bolt B2, Core C3) over two sites, model version 2.0; AI sensitivity 0.9 and false
positive rate 0.05 everywhere, except Bolt B2 after the first 1,500 studies, whose false
positive rate becomes 0.25 (discrepancy ≈ 5.5% → 23.5%). Reference: the first 1,500 calls;
windows of 600; alpha 0.01 per window (Bonferroni across strata). Tolerance: Bolt B2 flagged in
every window after the change; Acme A1 and Core C3 in none (their chance of a false flag over
the 3 windows is ≤ 3 × 0.01).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from detectors.performance.discrepancy import Call
from monitor.labelwatch import discrepancy
from monitor.metrics import names
from monitor.metrics.scrape import DatabaseCollector
from monitor.performance import observe

SEED, N, REFERENCE, WINDOW = 17, 3300, 1500, 600
SCANNERS = (("Acme", "A1"), ("Bolt", "B2"), ("Core", "C3"))
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def stream(url: str, *, rising: bool = True) -> None:
    rng = np.random.default_rng(SEED)
    inferences, labels = [], []
    for i in range(N):
        vendor, model = SCANNERS[int(rng.integers(0, 3))]
        positive = rng.random() < 0.10
        fp_rate = 0.25 if (rising and vendor == "Bolt" and i >= REFERENCE) else 0.05
        ai = rng.random() < (0.9 if positive else fp_rate)
        score = float(rng.uniform(0.5, 1.0) if ai else rng.uniform(0.0, 0.5))
        study, at = uuid.uuid4().hex, T0 + timedelta(minutes=10 * i)
        site = "north" if i % 2 else "south"
        inferences.append((str(uuid.uuid4()), site, at, study,
                           Jsonb({"Manufacturer": vendor, "ManufacturerModelName": model}),
                           Jsonb({"nodule": score}), Jsonb({"nodule": 0.5}), i))  # fmt: skip
        labels.append((str(uuid.uuid4()), study, Jsonb({"nodule": int(positive)}),
                       at + timedelta(hours=3), i))  # fmt: skip
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO inferences (event_id, content_hash, model_name, model_version, site,
                   occurred_at, study_pseudo, dicom, scores, thresholds, kafka_topic,
                   kafka_partition, kafka_offset)
               VALUES (%s, 'h', 'cxr-nodule', '2.0', %s, %s, %s, %s, %s, %s, 'i', 0, %s)""",
            inferences,
        )
        cur.executemany(
            """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
                   source, occurred_at, kafka_topic, kafka_partition, kafka_offset)
               VALUES (%s, 'h', 'cxr-nodule', %s, %s, 'report-labeler', %s, 'l', 0, %s)""",
            labels,
        )


CONFIG = discrepancy.DiscrepancyConfig(reference_size=REFERENCE, window_size=WINDOW, alpha=0.01)


def flagged_scanners(report) -> list[set[str]]:
    return [{t.stratum_value for t in w.flagged if t.stratum_kind == "scanner"}
            for w in report.windows]  # fmt: skip


def test_one_scanners_rising_false_positives_flag_that_scanner_only(database_url: str):
    stream(database_url)
    with psycopg.connect(database_url) as conn:
        run = discrepancy.run(conn, "cxr-nodule", CONFIG)
    assert run is not None and len(run.report.windows) == 3
    report = run.report
    assert flagged_scanners(report) == [{"Bolt B2"}] * 3
    bolt = [t for w in report.windows for t in w.tests
            if (t.finding, t.stratum_kind, t.stratum_value) == ("nodule", "scanner", "Bolt B2")]  # fmt: skip
    # The rise is the AI's false positives by the report, not its misses.
    assert all(t.window.ai_only > 3 * t.window.report_only for t in bolt)
    assert all(t.window.rate > 2 * t.reference.rate for t in bolt)

    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            """SELECT window_index, stratum_value, flagged, model_name FROM discrepancy_results
               WHERE stratum_kind = 'scanner' AND finding = 'nodule' AND flagged"""
        ).fetchall()
        assert {(r[0], r[1]) for r in stored} == {(1, "Bolt B2"), (2, "Bolt B2"), (3, "Bolt B2")}
        versions = conn.execute(
            """SELECT DISTINCT stratum_value FROM discrepancy_results
               WHERE stratum_kind = 'model_version'"""
        ).fetchall()
        assert versions == [("2.0",)]
        audited = conn.execute(
            """SELECT detail FROM audit_events WHERE action = 'discrepancy.evaluate'
               AND entity_id = 'cxr-nodule'"""
        ).fetchall()
        assert audited[-1][0]["signal"] == "discrepancy"
        assert "scanner=Bolt B2" in audited[-1][0]["flagged"]

    registry = CollectorRegistry()
    collector = DatabaseCollector(database_url)
    registry.register(collector)
    try:
        text = generate_latest(registry).decode()
    finally:
        collector.close()
    flags = {(s.labels["finding"], s.labels["stratum_kind"], s.labels["stratum_value"]): s.value
             for f in text_string_to_metric_families(text) for s in f.samples
             if s.name == names.DISCREPANCY_FLAGGED}  # fmt: skip
    assert flags[("nodule", "scanner", "Bolt B2")] == 1.0
    assert flags[("nodule", "scanner", "Acme A1")] == 0.0
    assert flags[("nodule", "scanner", "Core C3")] == 0.0


def test_the_same_stream_without_the_rise_flags_no_scanner(database_url: str):
    stream(database_url, rising=False)
    with psycopg.connect(database_url) as conn:
        run = discrepancy.run(conn, "cxr-nodule", CONFIG)
    assert run is not None
    assert flagged_scanners(run.report) == [set()] * 3


def test_too_few_labelled_calls_store_nothing(database_url: str):
    with psycopg.connect(database_url) as conn:
        assert discrepancy.run(conn, "cxr-nodule", CONFIG) is None
        assert conn.execute("SELECT count(*) FROM discrepancy_results").fetchone() == (0,)


def test_calls_skip_findings_without_a_threshold_or_a_binary_label():
    rows = [(T0, "s", "1", {"Manufacturer": "Acme"},
             {"nodule": 0.7, "mass": 0.9, "edema": 0.1}, {"nodule": 0.5, "edema": 0.5},
             {"nodule": 0, "mass": 1, "edema": 1})]  # fmt: skip
    calls = [c.call for c in discrepancy.calls_from_rows(rows)]
    assert calls == [
        Call(False, True, {"site": "s", "scanner": "Acme unknown", "model_version": "1"}, "edema"),
        Call(True, False, {"site": "s", "scanner": "Acme unknown", "model_version": "1"}, "nodule"),
    ]  # fmt: skip


def test_flagged_windows_open_a_discrepancy_alert_for_that_scanner_once(database_url: str):
    """The signal in the detection engine: three flagged windows of Bolt B2 (two open an
    alert, the budget's default persistence) give one open `discrepancy` alert there, none
    at the other scanners; feeding the same pass again judges no window twice."""
    stream(database_url)
    with psycopg.connect(database_url) as conn:
        run = discrepancy.run(conn, "cxr-nodule", CONFIG)
        assert run is not None
        changes = observe.observe_discrepancy(conn, "cxr-nodule", run, open_after=2)
        again = observe.observe_discrepancy(conn, "cxr-nodule", run, open_after=2)
        conn.commit()
        alerts = conn.execute(
            """SELECT stratum_kind, stratum_value, state, details->>'summary' FROM alerts
               WHERE model_name = 'cxr-nodule' AND signal = 'discrepancy'"""
        ).fetchall()
    assert changes and not again
    scanners = {(kind, value): (state, summary) for kind, value, state, summary in alerts
                if kind == "scanner"}  # fmt: skip
    assert set(scanners) == {("scanner", "Bolt B2")}
    state, summary = scanners[("scanner", "Bolt B2")]
    assert state == "open"
    assert "disagree" in summary and "in reference" in summary

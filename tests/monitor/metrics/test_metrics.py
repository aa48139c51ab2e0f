"""The scrape-time collector over a real PostgreSQL: values exposed, labels bounded, no UID.

An injected CollectorRegistry holds only the DatabaseCollector; its exposition is checked
by `promtool check metrics` (Debian package) and by scanning every label value.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from monitor.metrics import names
from monitor.metrics.scrape import DatabaseCollector

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def insert_inferences(url: str, n: int, *, site: str, model: str = "cxr-nodule") -> None:
    with psycopg.connect(url) as conn:
        for i in range(n):
            conn.execute(
                """INSERT INTO inferences (event_id, content_hash, model_name, model_version, site,
                       occurred_at, study_pseudo, scores, kafka_topic, kafka_partition,
                       kafka_offset)
                   VALUES (%s, 'h', %s, '1.4.2', %s, %s, %s, %s, 't', 0, %s)""",
                (str(uuid.uuid4()), model, site, NOW + timedelta(seconds=i),
                 uuid.uuid4().hex + uuid.uuid4().hex, Jsonb({"nodule": 0.2}), i),
            )  # fmt: skip
        conn.execute(
            """INSERT INTO dead_letters (kafka_topic, kafka_partition, kafka_offset, reason,
                   message, payload_sha256, payload_size)
               VALUES ('t', 0, 99, 'invalid_json', 'not JSON', 'x', 3)
               ON CONFLICT DO NOTHING"""
        )


def scrape(url: str) -> tuple[bytes, dict[str, list]]:
    registry = CollectorRegistry()
    collector = DatabaseCollector(url)
    registry.register(collector)
    try:
        text = generate_latest(registry)
    finally:
        collector.close()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return text, samples


def test_exposes_stored_counts_and_is_promtool_clean(database_url: str) -> None:
    insert_inferences(database_url, 5, site="north-general")
    text, samples = scrape(database_url)
    stored = {s.labels["site"]: s.value for s in samples[names.INFERENCES_STORED + "_total"]}
    assert stored == {"north-general": 5.0}
    dead = samples[names.DEAD_LETTERS_STORED + "_total"]
    assert [(s.labels["reason"], s.value) for s in dead] == [("invalid_json", 1.0)]
    assert samples[names.LAST_INFERENCE_RECEIVED][0].value > 0
    status = {s.labels["status"]: s.value for s in samples[names.MODEL_STATUS]}
    assert status["no_reference"] == 1.0 and sum(status.values()) == 1.0
    up = {s.labels["source"]: s.value for s in samples[names.SOURCE_UP]}
    assert up["ingest"] == 1.0
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_missing_table_is_a_down_source_not_a_failed_scrape(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("DROP TABLE IF EXISTS performance_results CASCADE")
    _, samples = scrape(database_url)
    up = {s.labels["source"]: s.value for s in samples[names.SOURCE_UP]}
    assert up["performance"] == 0.0 and up["ingest"] == 1.0
    assert names.PERFORMANCE not in samples


def test_unreachable_database_still_answers_the_scrape() -> None:
    _, samples = scrape("postgresql://nobody@127.0.0.1:1/none")
    assert {s.value for s in samples[names.SOURCE_UP]} == {0.0}


UID_LIKE = re.compile(r"^\d+(\.\d+){3,}$|[0-9a-f]{16,}|\d{6,}", re.I)


def test_no_label_value_looks_like_an_identifier(database_url: str) -> None:
    # A site field abused to carry a StudyInstanceUID, a pseudonym and an MRN, plus more
    # distinct sites than the label budget: none of it may reach a label.
    insert_inferences(database_url, 1, site="1.2.840.113619.2.55.3.604688119")
    insert_inferences(database_url, 1, site=uuid.uuid4().hex)
    insert_inferences(database_url, 1, site="MRN 00123456")
    for i in range(names.MAX_VALUES_PER_LABEL + 5):
        insert_inferences(database_url, 1, site=f"site-{i:03d}")
    _, samples = scrape(database_url)
    values = [v for group in samples.values() for s in group for v in s.labels.values()]
    assert values
    assert not [v for v in values if UID_LIKE.search(v)]
    sites = {s.labels["site"] for s in samples[names.INFERENCES_STORED + "_total"]}
    assert len(sites) <= names.MAX_VALUES_PER_LABEL + 1 and names.OTHER in sites
    # Collapsed series are summed, never duplicated: every stored inference is counted once.
    total = sum(s.value for s in samples[names.INFERENCES_STORED + "_total"])
    assert total == 3 + names.MAX_VALUES_PER_LABEL + 5


def test_bounded_label_rules() -> None:
    assert names.bounded_label("north-general") == "north-general"
    assert names.bounded_label("ACME X2") == "ACME X2"
    assert names.bounded_label(None) == "unknown"
    for bad in ("1.2.840.10008.5.1.4", "0b6f8a0e-1c2d-4d0e-9a51-0f5c3e2b7a10",
                "a3f1c2d4e5f60718", "P0001234", "x" * 100, "new\nline"):  # fmt: skip
        assert names.bounded_label(bad) == names.OTHER, bad
    assert names.stratum_kind("site") == "site"
    assert names.stratum_kind("patient_pseudo") == names.OTHER
    # URLs and DSNs (which may carry a password) never become label values.
    for url in ("http://pacs:8042/dicom-web", "postgresql://radwatch:pw@db/radwatch",
                "kafka://broker:9092"):  # fmt: skip
        assert names.bounded_label(url) == names.OTHER, url


def test_label_budget_keeps_the_first_values_then_other() -> None:
    budget = names.LabelBudget(limit=3)
    assert [budget("model", f"m{i}") for i in range(5)] == ["m0", "m1", "m2", "other", "other"]
    assert budget("model", "m1") == "m1"  # a value already seen keeps its name
    assert budget("site", "s0") == "s0"  # each label has its own budget
    assert budget("model", "Smith^John") == names.OTHER


def test_hostile_sites_stay_bounded_and_never_reach_metrics(database_url: str) -> None:
    """200 distinct site values, some carrying a name, a URL with a password, a UID: the
    exposition holds at most MAX_VALUES_PER_LABEL + 1 sites and none of the planted text;
    the busiest sites keep their names (read busiest first)."""
    planted = ["Smith^John", "http://u:hunter2@pacs/x", "pacs:8042/wado?token=hunter2",
               "1.2.840.99.1.2.3", "x" * 200, "site\nwith newline"]  # fmt: skip
    insert_inferences(database_url, 5, site="north-general")
    for site in planted + [f"ward {i:03d}" for i in range(200)]:
        insert_inferences(database_url, 1, site=site)
    text, samples = scrape(database_url)
    sites = {s.labels["site"]: s.value for s in samples[names.INFERENCES_STORED + "_total"]}
    assert len(sites) <= names.MAX_VALUES_PER_LABEL + 1 and sites[names.OTHER] > 0
    assert sites["north-general"] == 5.0
    for marker in (b"Smith", b"hunter2", b"1.2.840.99", b"xxxxxxxxxx", b"newline"):
        assert marker not in text, marker


def insert_drift_and_alert(url: str) -> None:
    """One reference, two windows (the latest counts), results per stratum, one open alert."""
    with psycopg.connect(url) as conn:
        ref = conn.execute(
            """INSERT INTO drift_references (model_name, created_by, n_events, n_fit, n_holdout,
                   last_occurred_at, last_event_id, strata_counts, content_hash,
                   detector_fingerprint, config, calibration)
               VALUES ('cxr-nodule', 'test', 400, 300, 100, %s, 'e', '{}', 'h', 'f', '{}', '{}')
               RETURNING id""",
            (NOW,),
        ).fetchone()[0]
        for seq, score, p in ((1, 0.5, 0.4), (2, 7.5, 1e-6)):
            end = NOW + timedelta(hours=seq)
            window = conn.execute(
                """INSERT INTO drift_windows (model_name, reference_id, seq, window_start,
                       window_end, first_event_id, last_event_id, n_events, closed_by,
                       unified_score)
                   VALUES ('cxr-nodule', %s, %s, %s, %s, 'a', 'b', 200, 'count', %s)
                   RETURNING id""",
                (ref, seq, NOW, end, score),
            ).fetchone()[0]
            for kind, value, feature in (("all", "all", ""), ("scanner", "NewVendor N1", ""),
                                         ("scanner", "NewVendor N1", "Manufacturer")):  # fmt: skip
                conn.execute(
                    """INSERT INTO drift_results (window_id, model_name, model_version,
                           reference_id, reference_hash, detector, detector_fingerprint, signal,
                           feature, stratum_kind, stratum_value, status, p_value, p_adjusted,
                           effect_size, drift, unified_score, window_start, window_end)
                       VALUES (%s, 'cxr-nodule', '1.4.2', %s, 'h', 'chi2:acquisition', 'f',
                               'acquisition', %s, %s, %s, %s, %s, %s, 0.4, %s, %s, %s, %s)""",
                    (window, ref, feature, kind, value, "drift" if p < 0.05 else "ok", p,
                     min(1.0, p * 3), p < 0.05, score, NOW, end),
                )  # fmt: skip
        conn.execute(
            """INSERT INTO alerts (model_name, stratum_kind, stratum_value, signal, state)
               VALUES ('cxr-nodule', 'scanner', 'NewVendor N1', 'acquisition', 'open'),
                      ('cxr-nodule', 'all', 'all', 'performance', 'acknowledged'),
                      ('cxr-nodule', 'all', 'all', 'scores', 'resolved')"""
        )


def test_latest_drift_window_and_open_alerts_are_exposed(database_url: str) -> None:
    insert_inferences(database_url, 3, site="north-general")
    insert_drift_and_alert(database_url)
    text, samples = scrape(database_url)
    p = {(s.labels["stratum_value"], s.labels["feature"]): s.value
         for s in samples[names.DRIFT_P_VALUE]}  # fmt: skip
    # Only the latest window (seq 2) is exposed; feature '' is the detector as a whole.
    assert p == {("all", "all"): 1e-6, ("NewVendor N1", "all"): 1e-6,
                 ("NewVendor N1", "Manufacturer"): 1e-6}  # fmt: skip
    assert {s.value for s in samples[names.DRIFT_SCORE]} == {7.5}
    assert {s.value for s in samples[names.DRIFT_DETECTED]} == {1.0}
    alerts = {(s.labels["kind"], s.labels["signal"], s.labels["state"]): s.value
              for s in samples[names.ALERTS_OPEN]}  # fmt: skip
    assert alerts == {("drift", "acquisition", "open"): 1.0,
                      ("performance", "performance", "acknowledged"): 1.0}  # fmt: skip
    status = {s.labels["status"]: s.value for s in samples[names.MODEL_STATUS]}
    assert status["drift"] == 1.0 and sum(status.values()) == 1.0
    assert {s.labels["source"] for s in samples[names.SOURCE_UP] if s.value == 1.0} == {
        "ingest", "drift", "references", "performance", "alerts", "incidents", "health",
        "labeler", "interactions"}  # fmt: skip
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_a_failing_model_and_parked_images_are_exposed(database_url: str) -> None:
    """A model whose pass failed shows as status `error` with its failure count; the other
    model keeps its own status; images parked during a PACS outage are counted per model."""
    from monitor.model_status import record_pass

    insert_inferences(database_url, 3, site="north-general", model="cxr-nodule")
    insert_inferences(database_url, 3, site="north-general", model="cxr-effusion")
    with psycopg.connect(database_url) as conn:
        record_pass(conn, "cxr-nodule", "drift", RuntimeError("boom"), actor="test")
        record_pass(conn, "cxr-nodule", "drift", RuntimeError("boom"), actor="test")
        record_pass(conn, "cxr-effusion", "drift", None, actor="test")
        for _ in range(2):
            conn.execute(
                """INSERT INTO image_fetch_queue (image_ref, event_id, model_name, reason)
                   VALUES (%s, %s, 'cxr-nodule', 'image_timeout')""",
                (uuid.uuid4().hex, str(uuid.uuid4())),
            )
        conn.commit()
    text, samples = scrape(database_url)
    errors = {(s.labels["model"], s.labels["component"]): s.value
              for s in samples[names.MODEL_PASS_ERRORS + "_total"]}  # fmt: skip
    assert errors == {("cxr-nodule", "drift"): 2.0, ("cxr-effusion", "drift"): 0.0}
    status = {(s.labels["model"], s.labels["status"]): s.value
              for s in samples[names.MODEL_STATUS]}  # fmt: skip
    assert status[("cxr-nodule", "error")] == 1.0
    assert status[("cxr-effusion", "no_reference")] == 1.0
    assert [(s.labels["model"], s.value) for s in samples[names.IMAGES_PARKED]] == [
        ("cxr-nodule", 2.0)
    ]
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                            timeout=30)  # fmt: skip
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()

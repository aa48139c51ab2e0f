"""monitor/performance/watch.py against a real PostgreSQL: the label join whatever the order,
corrections kept and audited, results stored, performance alerts in harmful scenarios only.
(The pure evaluation on in-memory studies: test_evaluation.py.)"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb
from scipy import stats

from monitor.performance import evaluation, summary, watch
from monitor.performance.evaluation import PerformanceConfig

START = datetime(2026, 11, 1, tzinfo=UTC)
SCANNERS = (("north", "ACME", "X1"), ("south", "Borealis", "B-200"), ("east", "ACME", "X2"))


def _insert_inference(conn, *, model, study, at, site="north", vendor="ACME", scanner="X1",
                      sex="F", band="40-59", scores=None, thresholds=None):  # fmt: skip
    event_id = str(uuid.uuid4())
    conn.execute(
        """INSERT INTO inferences (event_id, content_hash, model_name, site, occurred_at,
               study_pseudo, dicom, scores, thresholds, kafka_topic, kafka_partition,
               kafka_offset) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 't', 0, 0)""",
        (event_id, hashlib.sha256(event_id.encode()).hexdigest(), model, site, at, study,
         Jsonb({"Manufacturer": vendor, "ManufacturerModelName": scanner, "PatientSex": sex,
                "AgeBand": band}),
         Jsonb(scores or {"nodule": 0.5}), Jsonb(thresholds or {"nodule": 0.5})),
    )  # fmt: skip
    return event_id


def _insert_label(conn, *, model, study, at, labels):
    event_id = str(uuid.uuid4())
    conn.execute(
        """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels, source,
               occurred_at, kafka_topic, kafka_partition, kafka_offset)
           VALUES (%s, %s, %s, %s, %s, 'radiologist-report', %s, 'l', 0, 0)""",
        (event_id, hashlib.sha256(event_id.encode()).hexdigest(), model, study, Jsonb(labels),
         at),
    )  # fmt: skip
    return event_id


def _hospital(conn, *, n: int, seed: int, harmful_from: int | None, model: str = "cxr-nodule",
              label_share: float = 0.7, with_labels: bool = True,
              false_calls_from: int | None = None) -> list[tuple]:  # fmt: skip
    """numpy hospital: binormal scores (AUROC ~0.94); from `harmful_from` on, the model fails
    at scanner ACME X2 (scores no longer separate: a shift that harms performance); from
    `false_calls_from` on, label-negative scores rise by 0.5 SD everywhere (false calls
    0.136 → 0.274: specificity 0.86 → 0.73, the discrepancy rate doubles). Returns the label
    rows, inserted only when `with_labels` (else the caller delivers them later)."""
    rng = np.random.default_rng(seed)
    inferences, labels = [], []
    for i in range(n):
        site, vendor, scanner = SCANNERS[int(rng.integers(3))]
        y = int(rng.random() < 0.2)
        d = 2.2
        if harmful_from is not None and i >= harmful_from and scanner == "X2":
            d = 0.2
        rise = 0.5 * (1 - y) if false_calls_from is not None and i >= false_calls_from else 0.0
        score = float(stats.norm.cdf(rng.normal() + d * y - 0.5 * d + rise))
        at = START + timedelta(minutes=10 * i)
        study = f"s{seed}-{i}"
        event_id = f"{model}-{seed}-{i}"
        inferences.append((
            event_id, hashlib.sha256(event_id.encode()).hexdigest(), model, site, at, study,
            Jsonb({"Manufacturer": vendor, "ManufacturerModelName": scanner,
                   "PatientSex": "F" if rng.random() < 0.5 else "M",
                   "AgeBand": ("18-39", "40-59", "60-79")[int(rng.integers(3))]}),
            Jsonb({"nodule": round(score, 5)}), Jsonb({"nodule": 0.5})))  # fmt: skip
        if rng.random() < label_share:
            label_id = f"{event_id}-read"
            labels.append((label_id, hashlib.sha256(label_id.encode()).hexdigest(), model,
                           study, Jsonb({"nodule": y}), at + timedelta(hours=30)))  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO inferences (event_id, content_hash, model_name, site, occurred_at,
                   study_pseudo, dicom, scores, thresholds, kafka_topic, kafka_partition,
                   kafka_offset) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 't', 0, 0)""",
            inferences,
        )
    if with_labels:
        deliver_labels(conn, labels)
    conn.commit()
    return labels


def deliver_labels(conn, labels: list[tuple]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
                   source, occurred_at, kafka_topic, kafka_partition, kafka_offset)
               VALUES (%s, %s, %s, %s, %s, 'radiologist-report', %s, 'l', 0, 0)""",
            labels,
        )
    conn.commit()


class Recorder:
    """Collects what the monitor hands to the alert lifecycle (used where the lifecycle's own
    persistence rules are not what is under test)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, conn, **kwargs):
        self.calls.append(kwargs)
        return None


def test_labels_before_their_inference_are_joined(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        _insert_label(conn, model="m", study="early", at=START, labels={"nodule": 1})
        _insert_inference(conn, model="m", study="early", at=START + timedelta(hours=1),
                          scores={"nodule": 0.9})  # fmt: skip
        _insert_inference(conn, model="m", study="unread", at=START + timedelta(hours=2))
        conn.commit()
        studies = watch.load_studies(conn, "m")
    by_study = {s.study: s for s in studies}
    assert by_study["early"].labels == {"nodule": 1}
    assert by_study["unread"].labels is None


def test_corrected_label_supersedes_keeps_history_and_is_audited(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        _insert_inference(conn, model="m", study="s1", at=START)
        first = _insert_label(conn, model="m", study="s1", at=START + timedelta(hours=5),
                              labels={"nodule": 0})  # fmt: skip
        second = _insert_label(conn, model="m", study="s1", at=START + timedelta(days=3),
                               labels={"nodule": 1})  # fmt: skip
        # A replay of an older read delivered last must not override the newer read.
        _insert_label(conn, model="m", study="s1", at=START + timedelta(hours=1),
                      labels={"nodule": 0})  # fmt: skip
        conn.commit()
        assert watch.sync_label_corrections(conn) == 1
        assert watch.sync_label_corrections(conn) == 0  # idempotent
        conn.commit()
        (current,) = watch.load_studies(conn, "m")
        assert current.labels == {"nodule": 1}
        history = conn.execute(
            "SELECT event_id, revision, superseded_by FROM label_history ORDER BY revision"
        ).fetchall()
        assert len(history) == 3 and history[-1][0] == second
        corr = conn.execute(
            "SELECT superseded_event_id, event_id, changed_findings FROM label_corrections"
        ).fetchall()
        assert corr == [(first, second, ["nodule"])]
        audit_rows = conn.execute(
            "SELECT entity_id, detail FROM audit_events WHERE action = 'label.correct'"
        ).fetchall()
        assert [r[0] for r in audit_rows] == [second]
        assert audit_rows[0][1]["previous"] == {"nodule": 0}


def test_results_stored_with_estimated_beside_realised(database_url: str) -> None:
    config = PerformanceConfig(window=500, reference_size=1000)
    with psycopg.connect(database_url) as conn:
        _hospital(conn, n=2000, seed=1, harmful_from=None)
        conn.commit()
        (report,) = watch.run(conn, config=config, observer=Recorder())
        assert len(report.windows) == 2
        cell = report.windows[0].cell(("all", "all"), "nodule")
        assert cell is not None and cell.realised.auroc.value is not None
        assert cell.estimated.auroc.value is not None
        # No shift: the label-free estimate is within 0.05 of the realised AUROC (seed 1).
        assert abs(cell.estimated.auroc.value - cell.realised.auroc.value) < 0.05
        rows = conn.execute(
            """SELECT stratum_kind, realised, estimated, estimate_reliable FROM
               performance_results WHERE metric = 'auroc' AND window_kind = 'count:500'
               AND window_index = 0"""
        ).fetchall()
        kinds = {r[0] for r in rows}
        assert kinds == {"all", "site", "scanner", "sex", "age_band"}
        coverage = conn.execute(
            """SELECT realised FROM performance_results WHERE metric = 'label_coverage'
               AND window_index = 0 AND window_kind = 'count:500'"""
        ).fetchone()
        assert coverage is not None and 0.6 < coverage[0] < 0.8  # label share 0.7
        latency = conn.execute(
            "SELECT realised FROM performance_results WHERE metric = 'label_latency_median_h'"
            " AND window_kind = 'count:500' AND window_index = 0"
        ).fetchone()
        assert latency is not None and abs(latency[0] - 30.0) < 1e-6
        # Re-running upserts: same number of rows, nothing duplicated.
        before = conn.execute("SELECT count(*) FROM performance_results").fetchone()
        watch.run(conn, config=config, observer=Recorder())
        after = conn.execute("SELECT count(*) FROM performance_results").fetchone()
        assert before == after


def test_command_prints_estimated_beside_realised(settings) -> None:
    from conftest import run_radwatch

    with psycopg.connect(settings.database_url) as conn:
        _hospital(conn, n=1400, seed=2, harmful_from=None)
    out = run_radwatch(settings, "performance", "--window", "200", "--reference-size", "1000",
                       "--no-alerts")  # fmt: skip
    assert "AUROC est" in out.stdout and "real" in out.stdout, out.stdout
    assert "reference: first 1000 inferences" in out.stdout
    doc = json.loads(run_radwatch(settings, "performance", "--json", "--window", "200",
                                  "--reference-size", "1000", "--no-alerts").stdout)  # fmt: skip
    (model,) = doc
    assert model["model"] == "cxr-nodule" and len(model["windows"]) == 2
    cell = next(c for c in model["windows"][0]["cells"] if c["stratum"]["kind"] == "all")
    assert cell["estimated"]["auroc"]["value"] is not None
    assert cell["realised"]["auroc"]["value"] is not None


def test_the_frozen_drift_reference_is_the_performance_reference(database_url: str) -> None:
    # numpy hospital seed 6, 2000 studies 10 min apart; `reference build --first 600` freezes
    # the drift reference (tests/drift_streams.py's suite config). With no size asked for, the
    # performance watch judges against exactly those 600 studies (not the first 1000, the old
    # default) and monitors from study 600 on; a size asked for still wins.
    from drift_streams import CONFIG

    from monitor.drift import reference

    with psycopg.connect(database_url) as conn:
        _hospital(conn, n=2000, seed=6, harmful_from=None)
        info = reference.build(conn, model="cxr-nodule", first=600, config=CONFIG, actor="test")
        members = {str(r[0]) for r in conn.execute(
            "SELECT event_id FROM drift_reference_members WHERE reference_id = %s", (info.id,)
        ).fetchall()}  # fmt: skip
        (report,) = watch.run(conn, config=PerformanceConfig(window=500), observer=Recorder())
        detail = conn.execute(
            """SELECT detail FROM audit_events WHERE action = 'performance.evaluate'
               ORDER BY seq DESC LIMIT 1"""
        ).fetchone()
        (asked,) = watch.run(conn, config=PerformanceConfig(window=500, reference_size=1000),
                             observer=Recorder())  # fmt: skip
    ref = [s.event_id for s in report.reference.window.studies]
    assert ref == [f"cxr-nodule-6-{i}" for i in range(600)] and set(ref) == members
    assert [len(w.window.studies) for w in report.windows] == [500, 500, 400]
    assert report.windows[0].window.studies[0].event_id == "cxr-nodule-6-600"
    assert report.reference_choice == evaluation.ReferenceChoice(
        "frozen", 600, info.id, frozenset(members)
    )
    assert summary.describe_reference(report) == (
        f"frozen drift reference #{info.id} (600 studies, 2026-11-01 → 2026-11-05)"
    )
    assert f"reference: frozen drift reference #{info.id} (600 studies" in \
        summary.format_report(report)  # fmt: skip
    assert detail is not None and detail[0]["reference"] == {
        "kind": "frozen",
        "size": 600,
        "drift_reference_id": info.id,
    }
    assert detail[0]["reference_size"] == 600
    assert len(asked.reference.window.studies) == 1000
    assert asked.reference_choice is not None and asked.reference_choice.kind == "size"


def test_after_a_reference_rebuild_new_windows_still_reach_the_alerts(database_url) -> None:
    # numpy hospital seed 6, 2000 studies. Reference = first 600: complete 500-study windows
    # end at studies 1099 and 1599. Rebuilt as the first 1200: the windows are renumbered
    # from 0, and the new window 0 (studies 1200-1699) ends after everything judged so far,
    # so it is judged once (by time, not by its reused index); the windows that end before
    # the last judged one are not judged again.
    from drift_streams import CONFIG

    from monitor.drift import reference

    first, second = Recorder(), Recorder()
    config = PerformanceConfig(window=500)
    with psycopg.connect(database_url) as conn:
        _hospital(conn, n=2000, seed=6, harmful_from=None)
        reference.build(conn, model="cxr-nodule", first=600, config=CONFIG, actor="test")
        watch.run(conn, config=config, observer=first)
        reference.build(conn, model="cxr-nodule", first=1200, config=CONFIG, actor="test")
        (report,) = watch.run(conn, config=config, observer=second)
        watch.run(conn, config=config, observer=(third := Recorder()))

    def judged(recorder: Recorder) -> set[tuple[int, datetime]]:
        return {(c["details"]["window_index"], c["window_end"]) for c in recorder.calls
                if c["details"]["window_kind"] == "count:500"}  # fmt: skip

    new_window = next(w.window for w in report.windows if w.window.kind == "count:500")
    assert new_window.index == 0 and len(judged(first)) == 2
    assert new_window.end > max(end for _, end in judged(first))
    assert judged(second) == {(0, new_window.end)}
    assert judged(third) == set()  # once per window


def test_without_a_frozen_reference_the_first_1000_are_used_and_said_so(database_url) -> None:
    # numpy hospital seed 2, 1400 studies, no drift reference: the first 1000 inferences,
    # and the report says that none is frozen and how to freeze one.
    with psycopg.connect(database_url) as conn:
        _hospital(conn, n=1400, seed=2, harmful_from=None)
        (report,) = watch.run(conn, config=PerformanceConfig(window=200), observer=Recorder())
    assert len(report.reference.window.studies) == 1000
    assert report.windows[0].window.studies[0].event_id == "cxr-nodule-2-1000"
    assert report.reference_choice == evaluation.ReferenceChoice("fallback", 1000)
    text = summary.format_report(report)
    assert "reference: first 1000 inferences (2026-11-01 → 2026-11-07; no frozen drift " \
        "reference: `radwatch reference build --model cxr-nodule` freezes one" in text, text  # fmt: skip
    assert summary.report_dict(report)["reference_source"]["kind"] == "fallback"


def _open_performance_alerts(conn) -> set[tuple[str, str, str]]:
    rows = conn.execute(
        """SELECT model_name, stratum_kind, stratum_value FROM alerts
           WHERE signal = 'performance' AND state <> 'resolved'"""
    ).fetchall()
    return {(str(m), str(k), str(v)) for m, k, v in rows}


def test_harmful_scenario_alerts_once_labels_arrive_benign_does_not(database_url: str) -> None:
    # numpy hospital, seeds 4 (harmful: the model fails at ACME X2 from study 1000) and 5
    # (no shift); 3000 studies each, reference = first 1000, windows of 500, 70% read.
    config = PerformanceConfig(window=500, reference_size=1000)
    with psycopg.connect(database_url) as conn:
        harm = _hospital(conn, n=3000, seed=4, harmful_from=1000, model="harmful",
                         with_labels=False)  # fmt: skip
        _hospital(conn, n=3000, seed=5, harmful_from=None, model="benign")
        reference_end = START + timedelta(minutes=10 * 1000, hours=30)
        deliver_labels(conn, [row for row in harm if row[5] < reference_end])
        watch.run(conn, config=config)
        # Reads of the shifted period have not arrived: nothing to decide, no alert.
        assert _open_performance_alerts(conn) == set()
        undecided = conn.execute(
            "SELECT count(*) FROM performance_observations WHERE model_name = 'harmful'"
        ).fetchone()
        assert undecided == (0,)
        deliver_labels(conn, [row for row in harm if row[5] >= reference_end])
        reports = {r.model: r for r in watch.run(conn, config=config)}
        opened = _open_performance_alerts(conn)
        audited = conn.execute(
            """SELECT count(*) FROM audit_events WHERE action = 'alert.opened'
               AND refs->>'stratum' = 'scanner=ACME X2' AND refs->>'signal' = 'performance'"""
        ).fetchone()
        assert audited == (1,)
        # Windows already observed are never fed to the lifecycle twice.
        again = watch.run(conn, config=config)
        assert all(r.alert_changes == () for r in again)
    assert any(c.action == "opened" and c.stratum_value == "ACME X2"
               for c in reports["harmful"].alert_changes)  # fmt: skip
    assert not reports["benign"].alert_changes
    assert ("harmful", "scanner", "ACME X2") in opened, opened
    assert not any(model == "benign" for model, _, _ in opened), opened


def test_simulator_prevalence_change_flags_the_estimate(tmp_path) -> None:
    # issue 3's hospital (rendered DICOMs scored by the deployed CNN), scenario
    # prevalence_change at severity 1 (0.20 → 0.50), seed 7, 640 studies, onset 320;
    # reference = first 320, windows of 160. Every post-onset window with its reads in is
    # flagged: prevalence shift, estimate not trusted; no performance degradation fires
    # (the model is as good as before: the scenario is benign).
    from collectors.dicom_tags import age_band
    from collectors.simulator import stream

    studies = []
    for sim in stream.generate(640, seed=7, scenario="prevalence_change", onset=320,
                                  images_dir=tmp_path):  # fmt: skip
        inf, tags = sim.inference, sim.inference["dicom"]
        at = datetime.fromisoformat(inf["occurred_at"].replace("Z", "+00:00"))
        strata = {"site": inf["site"],
                  "scanner": f"{tags['Manufacturer']} {tags['ManufacturerModelName']}",
                  "sex": str(tags["PatientSex"]),
                  "age_band": age_band(str(tags["PatientAge"])) or "unknown"}  # fmt: skip
        studies.append(evaluation.Study(
            inf["event_id"], inf["study"]["study_uid"], at, strata, inf["prediction"]["scores"],
            inf["prediction"]["threshold"], sim.label["labels"] if sim.label else None,
            sim.label_at))  # fmt: skip
    report = evaluation.evaluate_model(
        studies, "cxr-nodule", PerformanceConfig(window=160, reference_size=320)
    )
    cells = [w.cell(evaluation.ALL, "nodule") for w in report.windows]
    assert len(cells) == 2 and all(c is not None for c in cells)
    for cell in cells:
        assert cell is not None and cell.estimated.reliability is not None
        assert cell.estimated.reliability.prevalence_shift, cell.estimated.reliability
        assert not cell.estimated.reliability.reliable
    assert not any(firing for *_, firing, _ in evaluation.window_decisions(report))


def test_cusum_alerts_once_when_specificity_drops_and_it_is_a_performance_incident(
    database_url: str,
) -> None:
    # numpy hospital seeds 11 (false calls double from study 1500: specificity 0.86 → 0.73)
    # and 12 (no shift); 3000 studies 10 min apart each, reference = first 1000, windows of
    # 500, 70% read 30 h later. The CUSUM channel (default ARL0 = 50,400 labelled studies,
    # shift ×2) opens one whole-model `performance_cusum` alert for the shifted model, with
    # its design, alarm and onset, in an incident of shift type performance; none for the
    # other; a second pass opens nothing more.
    config = PerformanceConfig(window=500, reference_size=1000)
    with psycopg.connect(database_url) as conn:
        _hospital(conn, n=3000, seed=11, harmful_from=None, model="worse",
                  false_calls_from=1500)  # fmt: skip
        _hospital(conn, n=3000, seed=12, harmful_from=None, model="steady")
        first = {r.model: r for r in watch.run(conn, config=config)}
        again = watch.run(conn, config=config)
        rows = conn.execute(
            """SELECT model_name, stratum_kind, stratum_value, onset, details, incident_id
               FROM alerts WHERE signal = 'performance_cusum'"""
        ).fetchall()
        (model, kind, value, onset, details, incident_id), *others = rows
        incident = conn.execute(
            "SELECT shift_type, summary FROM incidents WHERE id = %s", (incident_id,)
        ).fetchone()
        designs = conn.execute(
            """SELECT detail->'cusum' FROM audit_events WHERE action = 'performance.evaluate'
               AND entity_id = 'worse' ORDER BY seq LIMIT 1"""
        ).fetchone()
        opened = conn.execute(
            """SELECT count(*) FROM audit_events WHERE action = 'alert.opened'
               AND refs->>'signal' = 'performance_cusum'"""
        ).fetchone()
    assert others == [] and (model, kind, value) == ("worse", "all", "all")
    assert opened == (1,)
    assert [(c.signal, c.action) for c in first["worse"].alert_changes
            ].count(("performance_cusum", "opened")) == 1  # fmt: skip
    assert not any(c.signal == "performance_cusum" for c in first["steady"].alert_changes)
    # Spans already judged are not fed again (nor their alarms).
    assert not any(c.signal == "performance_cusum" for r in again for c in r.alert_changes)
    assert details["method"] == "cusum" and details["metric"] in ("false_positive", "discrepancy")
    keys = "p0 p0_guard p1 arl0_target arl0_achieved arl1 arl1_steady alarm_at statistic"
    for key in (*keys.split(), "indicators", "window_end", "onset", "summary"):
        assert details[key] is not None, key
    assert details["p0"] < details["p0_guard"] < details["p1"] == pytest.approx(2 * details["p0"])
    assert details["arl0_achieved"] >= details["arl0_target"]
    assert details["arl1_steady"] <= details["arl1"]
    assert "CUSUM crossed its limit" in details["summary"]
    # The onset (the chart's last reset) lies within a day of the first shifted study's read,
    # and the alarm after it.
    change_read = START + timedelta(minutes=10 * 1500, hours=30)
    assert onset == datetime.fromisoformat(details["onset"])
    assert abs(onset - change_read) < timedelta(hours=24), (onset, change_read)
    assert datetime.fromisoformat(details["alarm_at"]) > onset
    # It joins the windowed test's alerts of the same drop (their scanner is the root cause).
    assert incident_id is not None and incident is not None and incident[0] == "performance"
    assert designs is not None
    charts = {c["metric"]: c for c in designs[0]["charts"]}
    assert charts["false_positive"]["status"] == "ok"
    assert charts["false_positive"]["design"]["arl1_steady"] > 0


def test_a_specificity_floor_stop_rule_recommends_suspension(database_url: str) -> None:
    # The same hospitals as above (seed 11: specificity 0.86 → 0.73 from study 1500; seed 12:
    # no shift). The default plan's stop rule "specificity below 0.80 with 95% confidence"
    # holds in the shifted model's later windows (~280 label-negative studies each: the
    # one-sided Wilson upper bound of 0.73 is ~0.77) and never in the steady one (0.86).
    config = PerformanceConfig(window=500, reference_size=1000)
    with psycopg.connect(database_url) as conn:
        _hospital(conn, n=3000, seed=11, harmful_from=None, model="worse",
                  false_calls_from=1500)  # fmt: skip
        _hospital(conn, n=3000, seed=12, harmful_from=None, model="steady")
        watch.run(conn, config=config)
        floors = conn.execute(
            """SELECT a.model_name, a.details, i.shift_type, i.stop_rule
               FROM alerts a JOIN incidents i ON i.id = a.incident_id
               WHERE a.signal = 'performance_floor'"""
        ).fetchall()
        judged = conn.execute(
            """SELECT model_name, count(*), count(*) FILTER (WHERE firing)
               FROM performance_observations WHERE window_kind = 'floor:specificity-floor'
               GROUP BY model_name ORDER BY model_name"""
        ).fetchall()
    assert [(m, shift, rule) for m, _, shift, rule in floors] == [
        ("worse", "performance", "specificity-floor")]  # fmt: skip
    details = floors[0][1]
    assert details["upper"] < 0.80 and details["metric"] == "specificity", details
    assert details["summary"].startswith("specificity 0.7"), details["summary"]
    steady = dict((m, fired) for m, _, fired in judged)["steady"]
    assert steady == 0 and all(n >= 3 for _, n, _ in judged), judged

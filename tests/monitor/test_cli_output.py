"""Every result-printing command: readable text by default, the same JSON as before with --json
(monitor/commands/output.py), against the real PostgreSQL and broker; and `radwatch
performance` read-only unless --record."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import re
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from conftest import REPO, run_radwatch
from psycopg.types.json import Jsonb

from monitor.alerts.lifecycle import AlertChange
from monitor.commands import audit_cmd, detect_cmd
from monitor.commands.output import emit, key_values, table
from monitor.drift.scheduler import DetectionRun, WindowOutcome

START = datetime(2026, 11, 1, tzinfo=UTC)


def _is_text(out: str) -> bool:
    """Human text: not a JSON document (the old default)."""
    try:
        json.loads(out)
    except ValueError:
        return bool(out.strip())
    return False


def test_helpers_align_columns_and_keep_json_as_is() -> None:
    shown = table(("window", "firing"), [(1, "scores at all=all"), (12, "-")])
    assert shown.splitlines() == ["window  firing", "------  -----------------",
                                  "     1  scores at all=all", "    12  -"]  # fmt: skip
    assert key_values([("rows", 3), ("key id", None)], title="t").splitlines() == [
        "t", "  rows:   3", "  key id: -"]  # fmt: skip
    out = io.StringIO()
    emit({"a": 1, "when": START}, True, lambda d: "never", stream=out)
    assert out.getvalue() == '{"a": 1, "when": "2026-11-01 00:00:00+00:00"}\n'


def test_detect_summary_is_a_table_by_default() -> None:
    change = AlertChange(7, "opened", "m", "scanner", "ACME X1", "scores", "open")
    run = DetectionRun(windows=[
        WindowOutcome("m", 1, START, START + timedelta(hours=1), 200, 0.1, (), ()),
        WindowOutcome("m", 2, START + timedelta(hours=1), START + timedelta(hours=2), 200, 9.0,
                      (("scanner", "ACME X1", "scores"),), (change,)),
    ], changes=[change])  # fmt: skip
    text = "\n".join(detect_cmd.render_run(run))
    assert "2 window(s) evaluated" in text and "windows 1..2, 1 with a signal firing" in text
    assert "scores at scanner=ACME X1" in text and "opened" in text and "#" not in text
    assert _is_text(text)


def test_services_status_text_and_json() -> None:
    data_dir = tempfile.mkdtemp(prefix="radwatch-test-output-")

    def run(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "monitor.cli", *args], cwd=REPO,
                                env={"PATH": "/usr/bin:/bin", "RADWATCH_DATA_DIR": data_dir},
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    text = run("services", "status")
    assert _is_text(text) and "embedded services" in text and "broker:" in text
    assert "stopped" in text
    doc = json.loads(run("services", "status", "--json"))
    assert doc["broker"]["running"] is False and doc["postgres"]["running"] is False


def _audit(settings, *args: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="radwatch")
    audit_cmd.register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(args)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = ns.handler(ns, settings)
    return code, out.getvalue()


def test_audit_commands_text_by_default_json_on_request(settings, tmp_path) -> None:
    from monitor.audit import trail

    with psycopg.connect(settings.database_url) as conn:
        for i in range(3):
            trail.record(conn, actor="t", action="reference.built", entity_type="reference",
                         entity_id=str(i))  # fmt: skip
    code, text = _audit(settings, "audit", "checkpoint")
    assert code == 0 and _is_text(text) and "audit checkpoint 1 signed" in text, text
    assert "merkle root:" in text
    code, text = _audit(settings, "audit", "checkpoint", "--json")
    doc = json.loads(text)  # the first checkpoint's own audit row is sealed by the second
    assert doc["checkpoint"] == 2 and set(doc) == {"checkpoint", "first_seq", "last_seq",
                                                   "merkle_root", "key_id", "file"}  # fmt: skip
    code, text = _audit(settings, "audit", "export", "--format", "csv",
                        "--out", str(tmp_path / "a.csv"))  # fmt: skip
    assert _is_text(text) and "audit trail exported" in text and "rows:" in text, text
    code, text = _audit(settings, "audit", "export", "--format", "csv",
                        "--out", str(tmp_path / "b.csv"), "--json")  # fmt: skip
    doc = json.loads(text)
    assert doc["format"] == "csv" and doc["rows"] >= 3 and len(doc["sha256"]) == 64
    code, text = _audit(settings, "audit", "verify")
    assert code == 0 and text.startswith("audit trail intact"), text
    assert json.loads(_audit(settings, "audit", "verify", "--json")[1])["ok"] is True


def test_simulate_and_collect_text_by_default_json_on_request(settings) -> None:
    images = str(settings.data_dir / "images")
    text = run_radwatch(settings, "simulate", "--events", "4", "--seed", "2",
                        "--images-dir", images).stdout  # fmt: skip
    assert _is_text(text) and "published" in text and "inferences_published: 4" in text, text
    doc = json.loads(run_radwatch(settings, "simulate", "--events", "3", "--seed", "9",
                                  "--images-dir", images, "--json").stdout)  # fmt: skip
    assert doc["inferences_published"] == 3 and doc["scenario"] == "none"
    text = run_radwatch(settings, "collect", "--until-idle", "3").stdout
    assert _is_text(text) and "collected" in text and "inferences:" in text, text
    with psycopg.connect(settings.database_url) as conn:
        why = conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1").fetchall()
    assert re.search(r"^  inferences:\s+7$", text, re.M), (text, why)
    doc = json.loads(run_radwatch(settings, "collect", "--until-idle", "2", "--json").stdout)
    assert doc == {"inferences": 0, "labels": 0, "dead_letters": 0, "batches": doc["batches"]}


def _hospital(url: str, n: int, seed: int) -> None:
    """Binormal scores (AUROC ≈ 0.94), every study labelled: enough for windows of 200."""
    rng = np.random.default_rng(seed)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for i in range(n):
            y = int(rng.random() < 0.2)
            score = float(1 / (1 + np.exp(-(rng.normal() + 2.2 * y - 1.1))))
            at = START + timedelta(minutes=10 * i)
            event = f"perf-{seed}-{i}"
            digest = hashlib.sha256(event.encode()).hexdigest()
            cur.execute(
                """INSERT INTO inferences (event_id, content_hash, model_name, site, occurred_at,
                       study_pseudo, dicom, scores, thresholds, kafka_topic, kafka_partition,
                       kafka_offset) VALUES (%s, %s, 'cxr', 'north', %s, %s, %s, %s, %s,
                       't', 0, 0)""",
                (event, digest, at, f"s{i}", Jsonb({"Manufacturer": "ACME"}),
                 Jsonb({"nodule": round(score, 5)}), Jsonb({"nodule": 0.5})),
            )  # fmt: skip
            cur.execute(
                """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
                       source, occurred_at, kafka_topic, kafka_partition, kafka_offset)
                   VALUES (%s, %s, 'cxr', %s, %s, 'radiologist-report', %s, 'l', 0, 0)""",
                (f"{event}-read", digest[::-1], f"s{i}", Jsonb({"nodule": y}),
                 at + timedelta(hours=6)),
            )  # fmt: skip


def _written(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # type: ignore[index]
                     for t in ("performance_results", "performance_observations", "alerts",
                               "audit_events", "label_corrections",
                               "model_pass_status"))  # fmt: skip


def test_performance_is_read_only_unless_record(settings) -> None:
    url = settings.database_url
    _hospital(url, 1400, seed=4)
    before = _written(url)
    text = run_radwatch(settings, "performance", "--window", "200",
                        "--reference-size", "1000").stdout  # fmt: skip
    assert "AUROC est" in text and "read-only: nothing stored or alerted" in text, text
    doc = json.loads(run_radwatch(settings, "performance", "--window", "200",
                                  "--reference-size", "1000", "--json").stdout)  # fmt: skip
    assert doc[0]["model"] == "cxr" and len(doc[0]["windows"]) == 2
    assert _written(url) == before  # nothing stored, audited, alerted or marked
    recorded = run_radwatch(settings, "performance", "--window", "200", "--reference-size",
                            "1000", "--record", "--json").stdout  # fmt: skip
    assert json.loads(recorded)[0]["windows"] == doc[0]["windows"]  # the same evaluation
    after = _written(url)
    assert after[0] > before[0] and after[3] > before[3] and after[5] > before[5]

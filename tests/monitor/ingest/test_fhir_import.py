"""`radwatch labels import --fhir FILE` (monitor/ingest/fhir_import.py) against the embedded broker:
NDJSON DiagnosticReports become label events by accession; bad lines are dead-lettered."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from report_messages import MARKERS, diagnostic_report, ndjson
from test_hl7_listener import consume_all

from collectors.events import parse_record
from collectors.pseudonym import Pseudonymiser
from collectors.reports_in import FhirLimits
from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.ingest.fhir_import import import_fhir
from monitor.ingest.report_labels import ModelFindings

MODELS = (ModelFindings("cxr-effusion", ("pleural_effusion", "pneumothorax")),)


def test_import_publishes_labels_and_dead_letters_bad_lines(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="kafka")
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": diagnostic_report(rid="b1", accession="ACC-3001", status="amended",
                                       text="IMPRESSION: No pleural effusion. Quetzalmarker.")},
        {"resource": diagnostic_report(rid="b2", accession=None)},
    ]}  # fmt: skip
    file = tmp_path / "reports.ndjson"
    file.write_bytes(
        ndjson(diagnostic_report(), diagnostic_report(rid="p", status="preliminary"), bundle)
        + b"\n{not json\n"
        + json.dumps(diagnostic_report(rid="big", text="x" * 3000)).encode()
        + b"\n"
    )
    summary = import_fhir(file, settings, MODELS, limits=FhirLimits(max_line_bytes=2500))
    assert summary.as_dict() == {"lines": 5, "reports": 4, "published": 2, "preliminary": 1,
                                 "no_findings": 0, "dead_lettered": 3}  # fmt: skip
    pseudonym = Pseudonymiser(settings.key_bytes())
    values = consume_all(settings, settings.label_topic, expect=2)
    events = [parse_record(v, default_schema="radwatch.label.v1", pseudonym=pseudonym,
                           max_bytes=65536) for v in values]  # fmt: skip
    by_accession = {e.study.accession: e.labels for e in events}  # type: ignore[union-attr]
    assert by_accession == {
        pseudonym("accession", "ACC-2001"): {"pleural_effusion": 1, "pneumothorax": 0},
        pseudonym("accession", "ACC-3001"): {"pleural_effusion": 0, "pneumothorax": 0},
    }
    dead = [json.loads(v) for v in consume_all(settings, settings.deadletter_topic, expect=3)]
    assert sorted(d["reason"] for d in dead) == ["no_accession", "not_json", "too_large"]
    text = b"\n".join(values).decode() + json.dumps(dead) + caplog.text
    assert not [m for m in MARKERS if m.lower() in text.lower()]


def test_missing_file_is_a_config_error(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        import_fhir(tmp_path / "absent.ndjson", settings, MODELS)


def test_the_command_imports_and_exits_1_when_a_report_was_dead_lettered(
    settings: Settings, tmp_path: Path
) -> None:
    """`radwatch labels import --fhir` as a process: its summary on stdout (--json), exit 1
    because one line was refused, exit 2 with one line when no model is named."""
    from conftest import run_radwatch

    file = tmp_path / "reports.ndjson"
    file.write_bytes(ndjson(diagnostic_report()) + b"\n{not json\n")
    done = run_radwatch(settings, "labels", "import", "--fhir", str(file), "--model",
                        "cxr-effusion=pleural_effusion,pneumothorax", "--json", check=False)  # fmt: skip
    assert done.returncode == 1, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["published"], summary["dead_lettered"]) == (1, 1)
    refused = run_radwatch(settings, "labels", "import", "--fhir", str(file), check=False)
    assert refused.returncode == 2
    assert "RADWATCH_REPORT_MODELS" in refused.stderr and "Traceback" not in refused.stderr

"""`radwatch models`: the AI inventory, through the command line on a real PostgreSQL.

Two models: cxr-nodule (drift_streams.insert_stream, seed 5, 1,400 studies, version 1.4.2, a
reference from its first 600 and an approved plan) and cxr-fracture (seed 6, 300 studies
renamed, half of them version 2.1.0, no reference, one open incident). An empty database
answers with one line.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import psycopg
from conftest import run_radwatch
from drift_streams import CONFIG, MODEL, insert_stream

from monitor import model_status
from monitor.drift import reference
from monitor.plan import store
from monitor.plan.document import default_plan, dump, parse
from monitor.reports.inventory import NONE_YET

OTHER = "cxr-fracture"


def _fill(url: str) -> int:
    insert_stream(url, 1400, seed=5, onset=None)
    insert_stream(url, 300, seed=6, onset=None)
    with psycopg.connect(url) as conn:
        conn.execute(
            """UPDATE inferences SET model_name = %s,
                   model_version = CASE WHEN kafka_offset < 150 THEN '2.0.0' ELSE '2.1.0' END
               WHERE study_pseudo LIKE 'study-6-%%'""",
            (OTHER,),
        )
        conn.commit()
        info = reference.build(conn, model=MODEL, first=600, actor="test",
                               config=replace(CONFIG, online=False))  # fmt: skip
        plan = parse(dump(default_plan(MODEL)).replace("version: default", "version: 3"))
        store.approve(conn, plan, by="qa.lead")
        model_status.record_pass(conn, MODEL, "drift", None, actor="test")
        model_status.record_pass(conn, OTHER, "drift", None, actor="test")
        conn.execute(
            """INSERT INTO incidents (model_name, state, root_cause_kind, root_cause_value,
                   root_cause, shift_type, summary, recommended_action)
               VALUES (%s, 'open', 'site', 'east-imaging', 'site=east-imaging', 'acquisition',
                       'a new scanner at east-imaging', 'check the scanner')""",
            (OTHER,),
        )
        conn.commit()
    return info.id


def test_two_models_with_versions_plan_reference_incidents_and_status(settings, database_url):
    reference_id = _fill(database_url)
    listed = json.loads(run_radwatch(settings, "models", "--json").stdout)
    assert [m["model"] for m in listed] == [OTHER, MODEL]
    other, nodule = listed

    assert nodule["status"] == "watched" and nodule["inferences"] == 1400
    assert [v["version"] for v in nodule["versions"]] == ["1.4.2"]
    assert nodule["versions"][0]["first_seen"] == "2026-11-01T00:00:00+00:00"
    assert nodule["sites"] == ["east-imaging", "north-general", "south-clinic"]
    assert nodule["plan"] == {"version": "3", "approved_by": "qa.lead",
                              "approved_at": nodule["plan"]["approved_at"],
                              "in_force": "approved"}  # fmt: skip
    assert nodule["plan"]["approved_at"] is not None
    assert nodule["reference"]["id"] == reference_id
    assert nodule["reference"]["n_events"] == 600 and nodule["reference"]["built_at"]
    assert nodule["open_incidents"] == 0 and nodule["passes"]["drift"]["status"] == "ok"

    assert other["status"] == "incident open" and other["inferences"] == 300
    assert [(v["version"], v["inferences"]) for v in other["versions"]] == [("2.0.0", 150),
                                                                           ("2.1.0", 150)]  # fmt: skip
    assert other["versions"][0]["last_seen"] < other["versions"][1]["first_seen"]
    assert other["plan"]["version"] == "default" and other["plan"]["approved_by"] is None
    assert other["reference"] is None and other["open_incidents"] == 1

    # Resolved, the incident no longer counts; with no reference the model is not watched.
    # A failed pass outranks both.
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE incidents SET state = 'resolved' WHERE model_name = %s", (OTHER,))
        conn.commit()
    text = run_radwatch(settings, "models").stdout.splitlines()
    assert text[0].split()[:4] == ["model", "versions", "sites", "inferences"]
    row = next(line for line in text if line.startswith(OTHER))
    assert "2.0.0, 2.1.0" in row and "default" in row and row.endswith("no reference"), row
    row = next(line for line in text if line.startswith(MODEL))
    assert "3 (qa.lead)" in row and f"#{reference_id}, 600 ev." in row, row
    with psycopg.connect(database_url) as conn:
        model_status.record_pass(conn, MODEL, "performance", RuntimeError("x"), actor="test")
    row = next(line for line in run_radwatch(settings, "models").stdout.splitlines()
               if line.startswith(MODEL))  # fmt: skip
    assert row.endswith("failing") and "error (RuntimeError)" in row, row


def test_an_empty_database_answers_in_one_line(settings):
    started = time.monotonic()
    result = run_radwatch(settings, "models")
    assert result.stdout.strip() == NONE_YET
    assert json.loads(run_radwatch(settings, "models", "--json").stdout) == []
    # Two process starts (each imports the CLI) on a loaded 2-core machine: seconds, not more.
    assert time.monotonic() - started < 20

"""The plan in force through PostgreSQL and the command line: nothing changes until a named
person approves; an approval is audited with its diff; detection takes the approved budget."""

from __future__ import annotations

import json

import psycopg
from conftest import run_radwatch
from drift_streams import CONFIG, MODEL, ONSET, insert_stream

from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler
from monitor.plan import store
from monitor.plan.document import default_plan, dump


def _plan_file(tmp_path, version: str, days: float):
    plan = default_plan(MODEL).model_copy(
        update={"version": version,
                "false_alarm_budget": default_plan(MODEL).false_alarm_budget.model_copy(
                    update={"days": days})})  # fmt: skip
    path = tmp_path / f"plan-{version}.yaml"
    path.write_text(dump(plan))
    return path


def _audit(url: str, action: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        return [r[0] | {"actor": r[1]} for r in conn.execute(
            "SELECT detail, actor FROM audit_events WHERE action = %s ORDER BY seq", (action,)
        ).fetchall()]  # fmt: skip


def test_a_plan_takes_effect_only_when_approved_and_the_approval_is_audited(
    database_url, settings, tmp_path
):
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        info = reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
    path = _plan_file(tmp_path, "2026-12", 3650)

    # validate and diff read the file and the database; they change nothing.
    assert "a valid plan, version 2026-12" in run_radwatch(settings, "plan", "validate",
                                                          str(path)).stdout  # fmt: skip
    change = run_radwatch(settings, "plan", "diff", "--model", MODEL, str(path)).stdout
    assert "-  days: 90.0" in change and "+  days: 3650.0" in change, change
    shown = json.loads(run_radwatch(settings, "plan", "show", "--model", MODEL, "--json").stdout)
    assert shown["version"] == "default" and shown["approved_by"] is None
    assert shown["false_alarm_budget"] == {"incidents": 1.0, "days": 90.0}
    assert shown["derived"]["drift_open_after"] == 2 and shown["stop_rules"]

    # An empty --by is refused; a named person puts it in force.
    refused = run_radwatch(settings, "plan", "approve", "--model", MODEL, str(path), "--by",
                           " ", check=False)  # fmt: skip
    assert refused.returncode == 2 and not _audit(database_url, "plan.approved")
    run_radwatch(settings, "plan", "approve", "--model", MODEL, str(path), "--by", "qa.lead",
                 "--note", "yearly budget agreed at the AI committee")  # fmt: skip
    [approved] = _audit(database_url, "plan.approved")
    assert approved["actor"] == "qa.lead" and "+  days: 3650.0" in approved["diff"]
    again = run_radwatch(settings, "plan", "approve", "--model", MODEL, str(path), "--by",
                         "qa.lead", check=False)  # fmt: skip
    assert again.returncode == 2 and "already in force" in again.stderr

    # Detection runs with the approved plan's budget (a stricter one: longer persistence).
    with Scheduler(database_url, DetectionConfig(), actor="test-detect") as scheduler:
        scheduler.run_once()
        with psycopg.connect(database_url) as conn:
            rules = scheduler.rules.for_model(
                conn, MODEL, info.id, reference.active(conn, MODEL)[1]
            )  # type: ignore[index]
            in_force = store.in_force(conn, MODEL)
    assert rules.plan_version == "2026-12" == in_force.plan.version
    assert rules.policy.open_after == 3, rules
    [derived] = _audit(database_url, "budget.derived")
    assert derived["budget"] == {"incidents": 1.0, "days": 3650.0}
    shown = json.loads(run_radwatch(settings, "plan", "show", "--model", MODEL, "--json").stdout)
    assert shown["approved_by"] == "qa.lead" and shown["derived"]["drift_open_after"] == 3


def test_a_bad_plan_file_is_a_one_line_error(settings, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\nversion: 1\nwindows: {drift: -1}\n")
    result = run_radwatch(settings, "plan", "validate", str(bad), check=False)
    assert result.returncode == 2
    assert "windows.drift" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    missing = run_radwatch(settings, "plan", "validate", str(tmp_path / "nope.yaml"), check=False)
    assert missing.returncode == 2 and "cannot read plan file" in missing.stderr


def test_what_the_plan_does_not_watch_opens_no_alert(database_url):
    # The same vendor shift at south-clinic (tests/drift_streams.py) under an approved plan
    # watching only the scores and only site strata: no alert of another signal or stratum
    # kind opens (their tests are still run and stored).
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
        plan = default_plan(MODEL).model_copy(
            update={"version": "scores-only", "signals": ("scores",), "strata": ("site",)}
        )
        store.approve(conn, plan, by="qa.lead")
    with Scheduler(database_url, DetectionConfig(), actor="test-detect") as scheduler:
        run = scheduler.run_once()
    with psycopg.connect(database_url) as conn:
        alerts = conn.execute("SELECT stratum_kind, signal FROM alerts").fetchall()
        tested = conn.execute("SELECT DISTINCT signal FROM drift_results").fetchall()
        fired = conn.execute(
            "SELECT DISTINCT signal FROM drift_results WHERE status = 'drift' AND feature = ''"
        ).fetchall()
    assert run.windows and {s for (s,) in tested} >= {"acquisition", "model_embedding"}
    # The unwatched signals did fire (under the default plan they alert, test_incidents.py).
    assert "acquisition" in {s for (s,) in fired}, fired
    assert all(signal in ("scores", "online") for _, signal in alerts), alerts
    assert all(kind in ("all", "site") for kind, _ in alerts), alerts

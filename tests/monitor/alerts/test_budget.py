"""The false-alarm budget through PostgreSQL: the volume measured, the derivation recorded
once and audited when it changes, detection run with it, `radwatch budget show`.

The stream is tests/drift_streams.py's (1,400 events 10 minutes apart: 144 a day, measured
as 140 at two significant figures); the arithmetic itself is tested pure in
tests/detectors/test_false_alarm_budget.py.
"""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest
from conftest import REPO, radwatch_cmd, run_radwatch, settings_env
from drift_streams import CONFIG, MODEL, ONSET, insert_stream

from detectors.false_alarm_budget import FalseAlarmBudget, Volume, derive
from monitor.alerts import budget
from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler


@pytest.fixture
def stream_db(database_url: str) -> str:
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
    return database_url


def _derived_rows(url: str) -> list[dict]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT detail FROM audit_events WHERE action = 'budget.derived'
                 AND entity_id = %s ORDER BY seq""",
            (MODEL,),
        ).fetchall()
    return [r[0] for r in rows]


def test_volume_is_measured_in_event_time(stream_db):
    with psycopg.connect(stream_db) as conn:
        volume = budget.observed_volume(conn, MODEL)
        empty = budget.observed_volume(conn, "no-such-model")
    assert volume.studies_per_day == 140.0, volume  # 1,400 over 9.7 days
    assert volume.labels_per_day == 0.0  # this stream has no labels
    assert "1,400 studies" in volume.basis
    assert empty.basis.startswith("assumed"), empty


def test_detection_runs_with_the_derivation_and_audits_it_once(stream_db, settings):
    expected = derive(
        FalseAlarmBudget(), Volume(140.0, 0.0, "-"), drift_window=100, online=True
    )  # the stream's reference has the online detector
    with Scheduler(stream_db, DetectionConfig(), actor="test-detect") as scheduler:
        run = scheduler.run_once()
        scheduler.run_once()
    with psycopg.connect(stream_db) as conn:  # same volume, same settings: no new row
        again = budget.current(conn, MODEL, FalseAlarmBudget(), actor="test", drift_window=100,
                               online=True)  # fmt: skip
    assert again.settings() == expected.settings()
    assert run.windows
    rows = _derived_rows(stream_db)
    assert len(rows) == 1, rows
    assert rows[0]["settings"]["drift_alpha"] == expected.drift.alpha
    assert rows[0]["settings"]["drift_open_after"] == expected.drift.open_after
    assert rows[0]["previous_settings"] is None

    # A stricter budget (one false incident a year) is a new derivation, audited with the
    # settings it replaces, and detection's persistence follows it.
    strict = FalseAlarmBudget(1, 3650)
    with (
        Scheduler(stream_db, DetectionConfig(budget=strict), actor="test-detect") as scheduler,
        psycopg.connect(stream_db) as conn,
    ):
        loaded = scheduler._suite(conn, MODEL)
        assert loaded is not None
        rules = scheduler.rules.for_model(conn, MODEL, loaded[0].id, loaded[1])
    rows = _derived_rows(stream_db)
    assert len(rows) == 2 and rows[1]["previous_settings"] == rows[0]["settings"], rows
    tighter = derive(
        strict, Volume(140.0, 0.0, "-"), drift_window=100, online=True
    )  # the stream's reference has the online detector
    assert (rules.alpha, rules.policy.open_after) == (
        tighter.drift.alpha,
        tighter.drift.open_after,
    ), rows[1]
    assert (rules.alpha, rules.policy.open_after) != (
        expected.drift.alpha,
        expected.drift.open_after,
    )

    # The command shows the budget in force: the settings' here (no plan approved).
    settings = settings.replace(budget_days=3650.0)
    shown = json.loads(run_radwatch(settings, "budget", "show", "--model", MODEL,
                                    "--json").stdout)  # fmt: skip
    assert shown["budget"] == {"incidents": 1, "days": 3650}
    assert shown["drift_alpha"] == tighter.drift.alpha and shown["derived_at"]
    text = run_radwatch(settings, "budget", "show", "--model", MODEL).stdout
    assert "drift windows:" in text and "open after" in text, text


def test_budget_show_before_any_pass_says_so(stream_db, settings):
    text = run_radwatch(settings, "budget", "show", "--model", MODEL).stdout
    assert "not yet recorded" in text, text
    assert not _derived_rows(stream_db)  # showing writes nothing


def test_a_budget_that_is_not_a_number_is_a_one_line_error(settings):
    env = settings_env(settings) | {"RADWATCH_BUDGET_DAYS": "-5"}
    result = subprocess.run(radwatch_cmd("budget", "show", "--model", MODEL), env=env,
                            capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert result.returncode == 2, result
    assert "budget_days" in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
        result.stderr
    )

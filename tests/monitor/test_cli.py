"""The command line contract: help, exit codes, and the embedded services commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile

from conftest import REPO, radwatch_cmd, run_radwatch


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RADWATCH_")}
    return subprocess.run(radwatch_cmd(*args), env={**base, **(env or {})}, cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_help_lists_the_walking_skeleton_commands():
    out = run("--help").stdout
    for command in ("services", "db", "collect", "status", "simulate", "demo", "incidents",
                    "plan", "models", "budget"):  # fmt: skip
        assert command in out


def test_bad_configuration_is_one_line_and_exit_2():
    result = run("status", env={"RADWATCH_BATCH_SIZE": "lots"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert result.stderr.startswith("radwatch: batch_size must be an integer")


def test_usage_errors_are_one_line_and_exit_2():
    # argparse's own errors too: one line naming the command and where its help is.
    for args in (["no-such-command"], ["status", "--no-such-flag"], ["audit", "export"]):
        result = run(*args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("radwatch"), result.stderr
        assert "--help" in lines[0]


def test_incidents_commands_refuse_an_empty_by_in_one_line():
    # Who acknowledged or resolved is the audit trail's point: a blank name is a usage error,
    # found while parsing (before any database is reached).
    assert "incidents" in run("--help").stdout
    for command, action in (("incidents", "ack"), ("incidents", "resolve"), ("alerts", "ack"),
                            ("alerts", "resolve")):  # fmt: skip
        for who in ("", "   "):
            result = run(command, action, "3", "--by", who, "--note", "looked")
            assert result.returncode == 2, result.stderr
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "--by: must name who acts" in lines[0], result.stderr


def test_plan_render_refuses_another_file_type_before_any_work(tmp_path):
    result = run("plan", "render", "--model", "m", "--out", str(tmp_path / "plan.docx"))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "give a file ending in .html or .pdf" in lines[0], result.stderr


def test_services_up_status_migrate_down():
    # Not under pytest's tmp dir, which other pytest sessions reset to 0700 (see conftest).
    data_dir = tempfile.mkdtemp(prefix="radwatch-test-cli-")
    env = {"RADWATCH_DATA_DIR": data_dir}
    try:
        up = run("services", "up", "--detach", env=env)
        assert up.returncode == 0, up.stderr
        status = json.loads(run("services", "status", "--json", env=env).stdout)
        assert status["broker"]["running"] and status["postgres"]["running"]
        assert status["broker"]["bootstrap"].startswith("127.0.0.1:")
        url = status["postgres"]["url"]
        assert url.startswith("postgresql://") and "@127.0.0.1:" in url, url
        migrate = run("db", "migrate", env=env)
        assert migrate.returncode == 0 and "schema at version" in migrate.stdout
        again = run("db", "migrate", env=env)
        assert "applied" not in again.stdout  # idempotent
    finally:
        assert run("services", "down", env=env).returncode == 0
    status = json.loads(run("services", "status", "--json", env=env).stdout)
    assert not status["broker"]["running"] and not status["postgres"]["running"]
    shutil.rmtree(data_dir, ignore_errors=True)


def test_commands_start_without_importing_heavy_libraries():
    # Every command builds the whole parser; a torch import there would add seconds to
    # `radwatch status`. Heavy imports belong inside the handlers that need them.
    code = (
        "import sys; from monitor.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'alibi_detect', 'evidently', 'sklearn', 'matplotlib') "
        "if m in sys.modules))"
    )
    result = subprocess.run([*radwatch_cmd()[:1], "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_commands_are_thin_and_hold_no_sql():
    # Commands parse, call one library function and print (issue 14): a query, a wiring or a
    # pipeline belongs to the package that owns it, where tests and benchmarks can reach it.
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b")
    for path in sorted((REPO / "monitor" / "commands").glob("*.py")):
        text = path.read_text()
        assert not sql.search(text), f"{path.name}: SQL in a command ({sql.search(text)})"
        assert len(text.splitlines()) <= 160, f"{path.name}: a command module past 160 lines"


def test_demo_runs_end_to_end_and_ends_with_its_incident(settings, tmp_path):
    """The README's first command, on the test session's servers (its own database): the
    default scenario (an inverted-image bug at one scanner, seed 1, 2,000 studies) ends with
    one integration incident at that scanner, under the default plan's clause, with its stop
    rule holding ("suspend use recommended"); the plan is printed and written out."""
    out = tmp_path / "demo-out"
    result = run_radwatch(settings, "demo", "--out", str(out), timeout=600)
    lines = result.stdout.splitlines()
    at = max(i for i, line in enumerate(lines) if line.startswith("incidents: "))
    tail = lines[at:]
    assert tail[0].startswith("incidents: 1 (from "), result.stdout[-3000:]
    assert "scanner=ACME X2 · integration" in tail[1], tail
    assert tail[3].startswith("    recommended: Check the integration pipeline"), tail
    assert tail[4] == "    plan: incident_types.integration (plan default)", tail
    assert tail[5].startswith("    SUSPEND USE RECOMMENDED: stop rule integration-fault"), tail
    assert any(line.startswith("cxr-nodule monitoring plan default (the default plan")
               for line in lines), result.stdout[-3000:]  # fmt: skip
    written = {p.name for p in out.iterdir()}
    assert written >= {"summary.json", "report.html", "audit.ndjson", "plan.yaml", "plan.html"}
    assert "most atypical studies" not in result.stdout  # one line per alert, not a wall

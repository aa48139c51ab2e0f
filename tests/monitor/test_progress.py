"""monitor/commands/progress.py: a bar on a terminal, a periodic log line otherwise, and the
long commands wired to it (a real `radwatch simulate` piped, as under cron or CI)."""

from __future__ import annotations

import io
import logging
import re
import time

from monitor.commands import progress
from monitor.commands.progress import tracked


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_not_a_terminal_logs_a_line_every_interval_then_done(caplog) -> None:
    caplog.set_level(logging.INFO, logger=progress.__name__)
    stream = io.StringIO()  # not a tty: no bar drawn on it
    with tracked("simulate", total=10, unit="studies", interval_s=0.05, stream=stream) as step:
        for i in range(1, 4):
            step.update(i, labels=i - 1)
            time.sleep(0.12)
    lines = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    # 0.36 s at one line per 0.05 s: at least 3 periodic lines, then the closing one.
    assert len(lines) >= 4, lines
    assert re.fullmatch(r"simulate: [0-3]/10 studies, labels=\d, \d+ s", lines[0]), lines[0]
    assert lines[-1].startswith("simulate: 3/10 studies, labels=2") and lines[-1].endswith("(done)")
    assert stream.getvalue() == ""


def test_a_quick_step_says_nothing_and_a_clock_only_step_says_working(caplog) -> None:
    caplog.set_level(logging.INFO, logger=progress.__name__)
    with tracked("report", interval_s=5.0, stream=io.StringIO()):
        pass  # done before the first interval: no line at all
    assert not [r for r in caplog.records if r.name == progress.__name__]
    with tracked("reference build m", interval_s=0.05, stream=io.StringIO()):
        time.sleep(0.15)
    lines = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    assert lines and re.fullmatch(r"reference build m: working, \d+ s", lines[0]), lines


def test_a_terminal_gets_a_bar_and_no_log_lines(caplog) -> None:
    caplog.set_level(logging.INFO, logger=progress.__name__)
    terminal = _Terminal()
    with tracked("collect", unit="inferences", interval_s=0.01, stream=terminal,
                 poll=lambda t: t.update(42, labels=7)):  # fmt: skip
        time.sleep(0.7)  # the bar refreshes every 0.5 s, reading the polled counter
    drawn = terminal.getvalue()
    assert "collect" in drawn and "42" in drawn and "labels=7" in drawn, drawn
    assert not [r for r in caplog.records if r.name == progress.__name__]


def test_piped_simulate_logs_its_progress(settings, monkeypatch, caplog) -> None:
    """The real command (in this process, so the interval can be made short), stderr not a
    terminal: its periodic progress line is on the log, with counts and no identifier."""
    from monitor import cli

    monkeypatch.setattr(progress, "INTERVAL_S", 0.2)
    for name, value in __import__("conftest").settings_env(settings).items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.INFO, logger=progress.__name__)
    code = cli.main(["simulate", "--events", "40", "--seed", "3", "--rate", "60", "--json",
                     "--images-dir", str(settings.data_dir / "images")])  # fmt: skip
    assert code == 0
    records = [r.getMessage() for r in caplog.records if r.name == progress.__name__]
    # The first lines may come before any study is sent (they then carry no label count):
    # 40 studies at 60/s take ≥ 0.65 s, so a line every 0.2 s gives at least three.
    counted = [r for r in records if re.match(r"simulate: \d+/40 studies", r)]
    assert len(counted) >= 3, records
    sent = [int(re.match(r"simulate: (\d+)/", r).group(1)) for r in counted]  # type: ignore[union-attr]
    assert sent == sorted(sent), records
    assert counted[-1].startswith("simulate: 40/40 studies") and counted[-1].endswith("(done)")

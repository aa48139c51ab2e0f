"""The README's "## Python API" examples run as written.

Every ```python block under that heading is extracted and executed. The offline blocks share
one namespace, in order (simulate 600 studies of the synthetic hospital, seed 7, the
new_vendor scenario from study 300; reference = the first 300; windows of 100): the scoring
they print must have opened an alert and an acquisition incident, or the example shows
nothing. The online block runs against the test PostgreSQL after a small run of the
scheduler (tests/drift_streams.py: 1,400 studies, a new vendor at south-clinic from study
1,000, reference = first 600), its database URL injected as RADWATCH_DATABASE_URL; the alerts
it prints are the stored ones.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psycopg
import pytest
from drift_streams import CONFIG, MODEL, ONSET, insert_stream

from monitor.alerts import lifecycle
from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler

pytestmark = pytest.mark.slow  # the synthetic hospital renders 600 studies (~1 min on 2 cores)

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "## Python API"


def api_blocks(text: str) -> list[str]:
    """The ```python blocks between the heading and the next level-2 heading."""
    start = text.index(f"\n{HEADING}\n")
    rest = text[start + len(HEADING) + 2 :]
    end = re.search(r"^## ", rest, flags=re.MULTILINE)
    section = rest[: end.start()] if end else rest
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def test_the_section_has_offline_and_online_examples():
    blocks = api_blocks(README.read_text(encoding="utf-8"))
    online = [b for b in blocks if "api.connect(" in b]
    assert len(blocks) >= 3 and len(online) == 1, blocks
    assert all("from monitor import api" in b for b in (blocks[0], online[0]))
    # The extraction stops at the next heading: a block after the section is not taken.
    text = f"x\n{HEADING}\n```python\na = 1\n```\n## Next\n```python\nb = 2\n```\n"
    assert api_blocks(text) == ["a = 1\n"]


def test_the_offline_examples_run():
    blocks = [b for b in api_blocks(README.read_text(encoding="utf-8")) if "api.connect(" not in b]
    namespace: dict[str, object] = {"__name__": "readme"}
    for block in blocks:
        exec(compile(block, f"{README.name}:{HEADING}", "exec"), namespace)
    scoring = namespace["scoring"]
    alerts = scoring.alerts  # type: ignore[attr-defined]
    assert len(alerts) > 0 and "acquisition" in set(alerts["signal"])
    incidents = namespace["incidents"]
    assert isinstance(incidents, pd.DataFrame)
    assert "acquisition" in set(incidents["shift_type"]), incidents.to_dict("records")


def test_the_online_example_runs(database_url, monkeypatch):
    insert_stream(database_url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(database_url) as conn:
        reference.build(conn, model=MODEL, first=600, config=replace(CONFIG, online=False),
                        actor="test")  # fmt: skip
    with Scheduler(database_url, DetectionConfig(), actor="test-detect") as scheduler:
        scheduler.run_once()
    with psycopg.connect(database_url) as conn:
        stored = [a.id for a in lifecycle.list_alerts(conn, model=MODEL)]
    assert stored, "the small run opened no alert: the example would list nothing"

    monkeypatch.setenv("RADWATCH_DATABASE_URL", database_url)
    (block,) = [b for b in api_blocks(README.read_text(encoding="utf-8")) if "api.connect(" in b]
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(block, f"{README.name}:{HEADING}", "exec"), namespace)
    alerts = namespace["alerts"]
    assert isinstance(alerts, pd.DataFrame)
    assert alerts["id"].tolist() == stored

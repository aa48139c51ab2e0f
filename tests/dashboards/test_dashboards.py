"""Dashboards as code: the committed JSON is what the code builds, and queries use known names.

Fails when someone edits a dashboard module without rebuilding
(`radwatch dashboards build --out deploy/grafana/dashboards`) or edits the JSON by hand.
"""

from __future__ import annotations

import json
import re
import subprocess

from conftest import REPO, radwatch_cmd

from dashboards import build, common
from monitor.metrics import names


def test_committed_json_is_up_to_date() -> None:
    built = build.build_all()
    committed = {p.name: p.read_text() for p in build.COMMITTED.glob("*.json")}
    assert set(committed) == set(built), "committed dashboards differ from the built set"
    stale = [name for name, text in built.items() if committed[name] != text]
    assert not stale, f"stale: {stale}; run `radwatch dashboards build --out {build.COMMITTED}`"


def test_each_dashboard_has_panels_queries_and_a_unique_uid() -> None:
    uids = set()
    for name, doc in build.as_dicts().items():
        uids.add(doc["uid"])
        queries = list(common.panel_queries(doc))
        assert len(queries) >= 5, name
        for title, expr in queries:
            assert title, f"{name}: a panel without a title"
            common.substitute(expr)  # every variable has a value
    assert len(uids) == len(build.DASHBOARDS)


def test_queries_only_use_metric_names_from_monitor_metrics() -> None:
    defined = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    for name, doc in build.as_dicts().items():
        for title, expr in common.panel_queries(doc):
            for used in re.findall(r"radwatch_[a-z_]+", expr):
                base = re.sub(r"_(total|bucket|count|sum)$", "", used)
                assert used in defined or base in defined, f"{name} / {title}: {used}"


def test_build_command_writes_the_same_json(tmp_path) -> None:
    # Building needs no broker or database.
    subprocess.run(radwatch_cmd("dashboards", "build", "--out", str(tmp_path)), check=True,
                   cwd=REPO, timeout=120, capture_output=True)  # fmt: skip
    for name, text in build.build_all().items():
        assert json.loads((tmp_path / name).read_text()) == json.loads(text)

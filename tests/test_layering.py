"""Imports point one way (DESIGN.md §3): monitor → collectors, detectors; never back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "detectors": {"monitor", "collectors", "dashboards"},
    "collectors": {"monitor", "dashboards"},
    "monitor": {"dashboards"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_back(package):
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in (REPO / package).rglob("*.py")
        # The CLI is the outermost edge: `radwatch dashboards build` may call the builders.
        if not path.is_relative_to(REPO / "monitor" / "commands")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_backend_module_imports_alibi_detect():
    # alibi-detect >= 0.12 is BSL-1.1: it stays behind our detector interface.
    users = [
        str(path.relative_to(REPO))
        for package in ("monitor", "collectors", "detectors", "dashboards")
        for path in (REPO / package).rglob("*.py")
        if "alibi_detect" in imported_packages(path)
    ]
    assert users in ([], ["detectors/alibi_backend.py"])

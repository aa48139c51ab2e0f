"""The test tiers (DESIGN.md §10): `slow` and `integration` are given in tests/conftest.py by
module and test name; a renamed test must not drop out of its tier silently."""

from __future__ import annotations

import pytest
from conftest import INTEGRATION_MODULES, REPO, SLOW


def test_tier_lists_name_existing_tests() -> None:
    for entry in sorted(SLOW | INTEGRATION_MODULES):
        module, _, name = entry.partition("::")
        path = REPO / module
        assert path.is_file(), entry
        assert not name or f"def {name}(" in path.read_text(), entry


def test_markers_reach_the_collected_tests(request: pytest.FixtureRequest) -> None:
    # This module is in neither list and uses no server: it carries neither marker.
    assert request.node.get_closest_marker("slow") is None
    assert request.node.get_closest_marker("integration") is None

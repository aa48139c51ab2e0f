"""Imports point one way (DESIGN.md §3): monitor → collectors, detectors; never back.

The contracts themselves live in pyproject.toml ([tool.importlinter]) and run as
`lint-imports` in `make lint` and scripts/test.sh; these tests run them too, and show that
the no-cycle contract fails on a cycle (a contract that cannot fail checks nothing).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def lint_imports(cwd: Path, *config: str) -> subprocess.CompletedProcess[str]:
    # --no-cache: nothing written into the checkout.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", *config], cwd=cwd,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_import_contracts_hold():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    # Every contract the issue names is there and kept (a deleted one would pass silently).
    kept = [line for line in result.stdout.splitlines() if " KEPT" in line]
    for name in ("collectors import neither", "detectors import neither",
                 "dashboards import only the metric names", "monitor does not import dashboards",
                 "no import cycles"):  # fmt: skip
        assert any(line.startswith(name) for line in kept), (name, result.stdout[-3000:])


def test_the_cycle_contract_fails_on_a_cycle(tmp_path):
    package = tmp_path / "cyclic"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "db.py").write_text("def migrate():\n    from cyclic import audit\n")
    (package / "audit.py").write_text("from cyclic import db\n")
    (tmp_path / "contracts.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["cyclic"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "no cycles"\ntype = "acyclic_siblings"\n'
        'ancestors = ["cyclic"]\n'
    )
    result = lint_imports(tmp_path, "contracts.toml")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" in result.stdout and ".db -> .audit" in result.stdout


def test_only_the_backend_module_imports_alibi_detect():
    # alibi-detect >= 0.12 is BSL-1.1: it stays behind our detector interface.
    users = [
        str(path.relative_to(REPO))
        for package in ("monitor", "collectors", "detectors", "dashboards")
        for path in (REPO / package).rglob("*.py")
        if "alibi_detect" in imported_packages(path)
    ]
    assert users in ([], ["detectors/drift/alibi_backend.py"])


# The layout a newcomer reads (issue 14): small modules, a short monitor/ root. A module past
# the limit is split by what it does (pure computation apart from I/O), not trimmed.
MAX_MODULE_LINES = 450
MAX_MONITOR_ROOT_FILES = 10


def test_no_product_module_is_over_the_line_limit():
    long = {
        str(path.relative_to(REPO)): n
        for package in ("monitor", "collectors", "detectors", "dashboards")
        for path in (REPO / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_the_monitor_root_holds_few_modules_and_the_rest_is_in_sub_packages():
    root = sorted(p.name for p in (REPO / "monitor").glob("*.py"))
    assert len(root) <= MAX_MONITOR_ROOT_FILES, root

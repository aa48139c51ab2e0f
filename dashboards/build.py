"""Build every radwatch dashboard to Grafana JSON (committed under deploy/grafana/dashboards).

The end of dashboards-as-code: each module's `build()` → the SDK's JSON encoder →
one file per dashboard, byte-stable (sorted keys) so a test can say when the committed
JSON is stale. `radwatch dashboards build|push` calls this.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import drift, operations, overview, performance

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "deploy" / "grafana" / "dashboards"
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "radwatch-overview.json": overview.build,
    "radwatch-drift.json": drift.build,
    "radwatch-performance.json": performance.build,
    "radwatch-operations.json": operations.build,
}


def render(build: Callable[[], Dashboard]) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"


def build_all() -> dict[str, str]:
    """File name → dashboard JSON text."""
    return {name: render(build) for name, build in DASHBOARDS.items()}


def as_dicts() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in build_all().items()}


def write_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in build_all().items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written

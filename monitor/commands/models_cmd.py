"""`radwatch models [--json]`: the AI inventory (monitor/reports/inventory.py).

Every model with stored inferences: the versions and sites seen, the plan in force, the active
reference, open incidents, the last detection and performance passes, and one status word.
"""

from __future__ import annotations

import argparse
import json

from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "models", help="the AI inventory: every model, its versions, plan, reference, status",
        description="Example: radwatch models --json",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=_models)


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.reports import inventory
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    url = resolve_endpoints(settings, read_only=True, broker=False, retry=False).database_url
    with db.connect(url) as conn:
        entries = inventory.inventory(conn)
    if args.json:
        print(json.dumps([e.as_json() for e in entries], indent=2))
    else:
        print("\n".join(inventory.lines(entries)))
    return 0

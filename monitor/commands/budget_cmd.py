"""`radwatch budget show --model M [--json]`: the false-alarm budget and what it derives.

The QA team's and the auditor's view of monitor/alerts/budget.py: the budget, the model's
observed volume, and the α, persistence, CUSUM ARL0 and online ERT detection runs with, each
with how it was derived. What detection recorded at its last pass; before the first pass,
what it would record now (said so).
"""

from __future__ import annotations

import argparse
import json

from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "budget", help="the false-alarm budget and the settings derived from it",
        description="Example: radwatch budget show --model cxr-nodule",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="the budget, the observed volume and the derivation")
    show.add_argument("--model", required=True)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.reports import plan_summary
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    url = resolve_endpoints(settings, read_only=True, broker=False).database_url
    with db.connect(url) as conn:
        # The budget in force: the approved monitoring plan's, else the settings'.
        doc = plan_summary.shown(conn, args.model, settings).derived
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
        return 0
    when = doc["derived_at"] or "not yet recorded (detection records it at its next pass)"
    print(f"{args.model}: false-alarm budget, derived {when}")
    for line in doc["explanation"]:
        print(f"  {line}")
    return 0

"""`radwatch alerts list [--json] | ack ID --by WHO --note TEXT | resolve ID --by WHO --note TEXT`.

The QA team's edge of monitor/alerts/lifecycle.py: what is open, what moved, who took it.
"""

from __future__ import annotations

import argparse
import json

from monitor.commands.arguments import positive_int
from monitor.commands.incidents_cmd import someone
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "alerts", help="list, acknowledge and resolve alerts",
        description="Example: radwatch alerts ack 3 --by qa.lead --note 'vendor visit booked'",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = actions.add_parser("list", help="alerts, newest last")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--all", action="store_true", help="include resolved alerts")
    lst.add_argument("--model")
    lst.set_defaults(handler=_list)
    for name, help_ in (("ack", "acknowledge an alert"), ("resolve", "resolve an alert")):
        p = actions.add_parser(name, help=help_)
        p.add_argument("id", type=positive_int)
        p.add_argument("--by", required=True, type=someone,
                       help="who (a person's pseudonymous handle)")  # fmt: skip
        p.add_argument("--note", required=True)
        p.set_defaults(handler=_act, act=name)


def _conn(settings: Settings):
    """The existing database, as it is: listing, acknowledging and resolving alerts start no
    embedded service and run no migration (without alerts there is nothing to act on)."""
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    url = resolve_endpoints(settings, read_only=True, broker=False).database_url
    return db.connect(url)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.alerts import lifecycle

    with _conn(settings) as conn:
        found = lifecycle.list_alerts(conn, model=args.model)
    if not args.all:
        found = [a for a in found if a.state != lifecycle.RESOLVED]
    if args.json:
        print(json.dumps([a.as_dict() for a in found], indent=2, default=str))
        return 0
    if not found:
        print("no alerts")
    for a in found:
        print(lifecycle.format_alert(a))
    return 0


def _act(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.alerts import lifecycle
    from monitor.errors import UsageError

    with _conn(settings) as conn:
        try:
            if args.act == "ack":
                alert = lifecycle.acknowledge(conn, args.id, by=args.by, note=args.note)
            else:
                alert = lifecycle.resolve(conn, args.id, by=args.by, note=args.note)
        except lifecycle.AlertError as exc:
            raise UsageError(str(exc)) from exc
    print(f"alert {alert.id} is now {alert.state}")
    return 0

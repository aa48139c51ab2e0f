"""`radwatch incidents list [--json] [--all] | ack|resolve ID --by WHO --note TEXT | decide ID ...`.

The QA team's edge of monitor/alerts/incidents.py: one incident per root cause, its shift type
and recommended action; acknowledging or resolving it acts on its alerts too (each audited).
"""

from __future__ import annotations

import argparse
import json

from monitor.commands.arguments import positive_int
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "incidents", help="list, acknowledge and resolve incidents (related alerts as one)",
        description="Example: radwatch incidents ack 2 --by qa.lead --note 'vendor visit booked'",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = actions.add_parser("list", help="open and acknowledged incidents, oldest first")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--all", action="store_true", help="include resolved incidents")
    lst.add_argument("--model")
    lst.set_defaults(handler=_list)
    for name, help_ in (("ack", "acknowledge an incident and its open alerts"),
                        ("resolve", "resolve an incident and its active alerts")):  # fmt: skip
        p = actions.add_parser(name, help=help_)
        p.add_argument("id", type=positive_int)
        p.add_argument("--by", required=True, type=someone,
                       help="who (a person's pseudonymous handle)")  # fmt: skip
        p.add_argument("--note", required=True)
        p.set_defaults(handler=_act, act=name)
    decide = actions.add_parser(
        "decide", help="record the decision on an incident whose plan stop rule holds",
        description="Example: radwatch incidents decide 3 --decision suspend --by ai.governance "
                    "--reason 'inverted images from the new PACS router'",
    )  # fmt: skip
    decide.add_argument("id", type=positive_int)
    decide.add_argument("--decision", required=True, choices=("suspend", "continue"))
    decide.add_argument("--by", required=True, type=someone, help="who decides")
    decide.add_argument("--reason", required=True)
    decide.set_defaults(handler=_decide)


def someone(text: str) -> str:
    """A non-blank `--by`: every acknowledgement and resolution names who did it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name who acts, not be empty")
    return text.strip()


def _conn(settings: Settings):
    """The existing database, as it is (no embedded service started, no migration run)."""
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    url = resolve_endpoints(settings, read_only=True, broker=False).database_url
    return db.connect(url)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.alerts import incidents

    with _conn(settings) as conn:
        found = incidents.list_incidents(conn, all=args.all, model=args.model)
    if args.json:
        print(json.dumps([i.as_dict() for i in found], indent=2, default=str))
        return 0
    if not found:
        print("no incidents")
    for i in found:
        print(incidents.format_incident(i))
    return 0


def _act(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.alerts import incidents
    from monitor.errors import UsageError

    with _conn(settings) as conn:
        try:
            if args.act == "ack":
                incident = incidents.acknowledge(conn, args.id, by=args.by, note=args.note)
            else:
                incident = incidents.resolve(conn, args.id, by=args.by, note=args.note)
        except incidents.IncidentError as exc:
            raise UsageError(str(exc)) from exc
    print(f"incident {incident.id} is now {incident.state} ({len(incident.alerts)} alerts)")
    return 0


def _decide(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.alerts import governance
    from monitor.errors import UsageError

    with _conn(settings) as conn:
        try:
            governance.decide(conn, args.id, decision=args.decision, by=args.by,
                              reason=args.reason)  # fmt: skip
        except governance.DecisionError as exc:
            raise UsageError(str(exc)) from exc
    print(f"incident {args.id}: decision '{args.decision}' recorded for {args.by}")
    return 0

"""`radwatch services up|down|status`: the embedded broker and PostgreSQL for a pilot."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from monitor.config import Settings
from monitor.services import embedded


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "services",
        help="start/stop the embedded broker and PostgreSQL",
        description="Embedded services. Example: radwatch services up --detach",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start them (foreground unless --detach)")
    up.add_argument("--detach", action="store_true", help="start and return at once")
    up.set_defaults(handler=_up)
    actions.add_parser("down", help="stop them").set_defaults(handler=_down)
    actions.add_parser("status", help="print their addresses as JSON").set_defaults(handler=_status)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.services.runtime import resolve_endpoints

    # Started here, so a server that does not come up is an error now, not a wait.
    resolve_endpoints(settings, retry=False)
    print(json.dumps(embedded.services_status(settings.data_dir), indent=2))
    if args.detach:
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    embedded.services_down(settings.data_dir)
    return 0


def _down(args: argparse.Namespace, settings: Settings) -> int:
    embedded.services_down(settings.data_dir)
    return 0


def _status(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(embedded.services_status(settings.data_dir), indent=2))
    return 0

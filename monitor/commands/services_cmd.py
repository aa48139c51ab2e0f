"""`radwatch services up|down|status`: the embedded broker and PostgreSQL for a pilot."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from monitor.commands.output import add_json_flag, emit, key_values
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
    add_json_flag(up)
    up.set_defaults(handler=_up)
    actions.add_parser("down", help="stop them").set_defaults(handler=_down)
    status = actions.add_parser("status", help="their addresses and whether they run")
    add_json_flag(status)
    status.set_defaults(handler=_status)


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.services.runtime import resolve_endpoints

    # Started here, so a server that does not come up is an error now, not a wait.
    resolve_endpoints(settings, retry=False)
    emit(embedded.services_status(settings.data_dir), args.json, render_status, indent=2)
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
    emit(embedded.services_status(settings.data_dir), args.json, render_status, indent=2)
    return 0


def render_status(doc: dict[str, Any]) -> str:
    broker, postgres = doc["broker"], doc["postgres"]

    def state(running: bool) -> str:
        return "running" if running else "stopped"

    return key_values([
        ("data dir", doc["data_dir"]),
        ("broker", f"{state(broker['running'])}, bootstrap {broker['bootstrap'] or '-'}"),
        ("postgres", f"{state(postgres['running'])}, {postgres['url'] or '-'} "
                     f"(user {postgres['user']})"),
    ], title="embedded services")  # fmt: skip

"""`radwatch db migrate`: create or upgrade the schema (idempotent)."""

from __future__ import annotations

import argparse

from monitor.config import Settings
from monitor.store import db


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "db", help="database schema", description="Example: radwatch db migrate"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    actions.add_parser("migrate", help="create or upgrade the schema").set_defaults(
        handler=_migrate
    )


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.services.runtime import migrate, resolve_endpoints

    # One-shot: it may start the embedded PostgreSQL (not the broker), and a server that is
    # absent or refuses us is one line and exit 2, not a wait.
    endpoints = resolve_endpoints(settings, prepare=False, broker=False)
    applied = migrate(settings, endpoints, retry=False)
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    print(f"schema at version {db.schema_version(endpoints.database_url)}")
    return 0

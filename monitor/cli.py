"""`radwatch` command line (DESIGN.md §9): parse, load settings, dispatch to a subcommand.

The outermost edge. Exit codes: 0 success, 1 a finding the command exists to report,
2 bad usage or configuration, or a server that is absent or refuses us (one line on
stderr, never a traceback), 3 a bug (its traceback, then one line). Subcommands live in
monitor/commands/, one module each, listed in COMMANDS below (`python -m monitor` and
`python -m monitor.cli` both run `main`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from monitor.commands import (
    alerts_cmd,
    audit_cmd,
    budget_cmd,
    collect_cmd,
    compliance_report_cmd,
    dashboards_cmd,
    db_cmd,
    demo_cmd,
    detect_cmd,
    dicom_listen_cmd,
    embed_cmd,
    hl7_listen_cmd,
    incidents_cmd,
    labels_cmd,
    metrics_cmd,
    models_cmd,
    performance_cmd,
    plan_cmd,
    reference_cmd,
    report_cmd,
    run_cmd,
    services_cmd,
    simulate_cmd,
    status_cmd,
    studies_cmd,
)
from monitor.commands.progress import tracked
from monitor.config import load_settings
from monitor.errors import ConfigError, UsageError
from monitor.services.embedded import ServiceError

# Every subcommand, listed rather than discovered: a plain import graph (no importlib, so
# no cli <-> command cycle), and `--help` lists them in this order. Each module has a
# `register(subparsers)` function; a new command is one module plus one line here.
COMMANDS = (
    alerts_cmd,
    budget_cmd,
    audit_cmd,
    collect_cmd,
    compliance_report_cmd,
    dashboards_cmd,
    db_cmd,
    demo_cmd,
    detect_cmd,
    dicom_listen_cmd,
    embed_cmd,
    hl7_listen_cmd,
    incidents_cmd,
    labels_cmd,
    metrics_cmd,
    models_cmd,
    performance_cmd,
    plan_cmd,
    reference_cmd,
    report_cmd,
    run_cmd,
    services_cmd,
    simulate_cmd,
    status_cmd,
    studies_cmd,
)
# Commands that take tens of seconds inside a module that does not report progress (the
# report renderers): their running clock is shown around the whole command.
CLOCKED = frozenset({"report", "compliance-report"})

EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
log = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line (the usage block is one `--help` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="radwatch",
        description="Monitor radiology AI after go-live: drift, performance, alerts, audit.",
    )
    parser.add_argument("--config", help="TOML settings file (RADWATCH_* variables override it)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python is chatty at INFO, and at DEBUG it logs raw record bytes, which carry
    # identifiers: it stays at WARNING even with --verbose (no PHI in logs, DESIGN.md §5).
    logging.getLogger("kafka").setLevel(logging.WARNING)
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently telemetry off (DESIGN.md §10)
    try:
        settings = load_settings(args.config)
        with tracked(args.command) if args.command in CLOCKED else contextlib.nullcontext():
            return int(args.handler(args, settings) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"radwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        # An embedded service would not start or stop: the first line says why; the log
        # tail that follows it in the exception goes to the debug log only.
        print(f"radwatch: {str(exc).splitlines()[0]}", file=sys.stderr)
        log.debug("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        reason = environment_error(exc)
        if reason is None:
            # A bug, not the user's to fix: the traceback says where; exit 3, so that a
            # crash is never read as a finding (exit 1, e.g. a tampered audit trail).
            log.exception("unexpected error")
            print(f"radwatch: internal error ({type(exc).__name__}); this is a bug, "
                  "please report it with the traceback above", file=sys.stderr)  # fmt: skip
            return EXIT_BUG
        log.debug("%s", reason, exc_info=exc)  # the traceback, with --verbose only
        print(f"radwatch: {reason}", file=sys.stderr)
        return EXIT_USAGE


def environment_error(exc: BaseException) -> str | None:
    """One line for an error the user's setup caused (a server absent, refusing us, or not
    migrated), None for anything else. Messages name hosts and settings, never secrets."""
    import psycopg
    from kafka.errors import KafkaError

    from collectors.kafka_io import BrokerUnavailable
    from monitor.store.db import SchemaError, describe

    if isinstance(exc, SchemaError | BrokerUnavailable):
        return str(exc).splitlines()[0]
    if isinstance(exc, psycopg.OperationalError):
        return describe(exc).message
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        # The login lacks a grant: which login runs what is configuration (DESIGN.md §5a).
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "permission denied"
        return (f"PostgreSQL refused: {detail} (this login may not do that; schema "
                "migrations need the database owner's login)")  # fmt: skip
    if isinstance(exc, KafkaError):
        # kafka-python's own errors after bootstrap (timeouts, lost brokers): the class says
        # what; the message may quote topic names only, never record content.
        detail = str(exc).splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"Kafka: {detail} (is the broker running? check RADWATCH_KAFKA_BOOTSTRAP)"
    return None


if __name__ == "__main__":
    sys.exit(main())

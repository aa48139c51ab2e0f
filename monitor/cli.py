"""`radwatch` command line (DESIGN.md §9): parse, load settings, dispatch to a subcommand.

The outermost edge. Exit codes: 0 success, 1 a finding the command exists to report,
2 bad usage or configuration (one line on stderr). Subcommands live in monitor/commands/.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from monitor.commands import command_modules
from monitor.config import ConfigError, load_settings
from monitor.services import ServiceError

EXIT_OK, EXIT_FINDING, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad usage detected after parsing; printed on one line, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radwatch",
        description="Monitor radiology AI after go-live: drift, performance, alerts, audit.",
    )
    parser.add_argument("--config", help="TOML settings file (RADWATCH_* variables override it)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in command_modules():
        importlib.import_module(name).register(sub)
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
        return int(args.handler(args, settings) or 0)
    except (ConfigError, UsageError) as exc:
        print(f"radwatch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        # An embedded service would not start or stop: the first line says why; the log
        # tail that follows it in the exception goes to the debug log only.
        print(f"radwatch: {str(exc).splitlines()[0]}", file=sys.stderr)
        logging.getLogger(__name__).debug("%s", exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: commands raise
    # monitor.cli.UsageError, which must be the class main() catches.
    from monitor.cli import main as _main

    sys.exit(_main())

"""Errors the `radwatch` command line turns into one line and an exit code (DESIGN.md §9).

Sits below `monitor.cli` and `monitor/commands/`: the command modules raise these and
`monitor.cli.main` catches them, so neither has to import the other to share the class.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage detected after parsing; printed on one line, exit 2."""

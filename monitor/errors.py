"""The root of monitor's exception family, and the errors the command line turns into one line.

Sits below everything in monitor/ (it imports no monitor module): every exception class
defined in monitor/ derives from `RadwatchError` (tests/monitor/test_errors.py checks it), so
a caller can catch all of radwatch's own errors at once. Each keeps the builtin base it had
(a ConfigError is still a ValueError), so every existing `except` behaves as before.
`monitor.cli.main` catches `UsageError` and `ConfigError`: the command modules raise them
without importing the CLI (DESIGN.md §9).
"""

from __future__ import annotations


class RadwatchError(Exception):
    """Something radwatch's monitor refuses or cannot do, raised on purpose with a reason."""


class UsageError(RadwatchError):
    """Bad usage detected after parsing; printed on one line, exit 2."""


class ConfigError(RadwatchError, ValueError):
    """A setting is missing or malformed; the CLI prints it on one line and exits 2."""

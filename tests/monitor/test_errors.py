"""One root exception for monitor (issue 14): every public exception class defined under
monitor/ derives from monitor.errors.RadwatchError, keeping its builtin base, so a caller can
catch all of radwatch's own errors at once and no existing `except` changes. Every module is
imported and walked, so a new exception class cannot be forgotten. Private control-flow
exceptions (a leading underscore) are left out.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import monitor
from monitor.errors import ConfigError, RadwatchError, UsageError


def monitor_modules() -> list[str]:
    names = [info.name for info in pkgutil.walk_packages(monitor.__path__, "monitor.")]
    # __main__ runs the command line when imported.
    return sorted(name for name in names if not name.endswith(".__main__"))


def exception_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in monitor_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException)
                    and value.__module__ == name and not attr.startswith("_")):  # fmt: skip
                found[f"{name}.{attr}"] = value
    return found


def test_every_public_exception_in_monitor_derives_from_the_root():
    found = exception_classes()
    # The walk sees the known family (a walk that found nothing would pass vacuously).
    assert {"monitor.errors.UsageError", "monitor.errors.ConfigError",
            "monitor.store.db.SchemaError", "monitor.alerts.lifecycle.AlertError",
            "monitor.drift.scheduler.DetectionError"} <= set(found), sorted(found)  # fmt: skip
    outside = sorted(name for name, cls in found.items() if not issubclass(cls, RadwatchError))
    assert outside == [], f"derive these from monitor.errors.RadwatchError: {outside}"


def test_the_builtin_bases_are_kept():
    # Existing `except ValueError` / `except RuntimeError` around these still catch them.
    assert issubclass(ConfigError, ValueError) and issubclass(UsageError, RadwatchError)
    found = exception_classes()
    assert issubclass(found["monitor.store.db.SchemaError"], RuntimeError)
    assert issubclass(found["monitor.store.db.DatabaseURLError"], ConfigError)
    assert issubclass(found["monitor.alerts.webhook.WebhookError"], ValueError)
    assert issubclass(found["monitor.audit.actions.UnknownAuditAction"], ValueError)

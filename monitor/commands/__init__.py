"""CLI subcommands, one module each (`*_cmd.py` with a `register(subparsers)` function).

`monitor.cli` discovers them, so adding a command never edits a shared list.
"""

import pkgutil


def command_modules() -> list[str]:
    return sorted(
        f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.name.endswith("_cmd")
    )

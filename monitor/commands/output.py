"""How every command prints its result: readable text by default, JSON with `--json`.

The command line's last step (DESIGN.md §9): a command computes one result object and hands it
to `emit` with a renderer for people; `--json` prints the same object as JSON instead, exactly
as scripts and tests parse it. Plain aligned text (no colour, no box drawing) so that output
piped to a file or a ticket reads the same as on a terminal. Not a command:
`monitor.cli.COMMANDS` does not list it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

Rendered = str | Iterable[str]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """The one `--json` flag every result-printing command takes."""
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON (for scripts) instead of text")  # fmt: skip


def emit(obj: Any, as_json: bool, render: Callable[[Any], Rendered], *,
         indent: int | None = None, stream: TextIO | None = None) -> None:  # fmt: skip
    """Print `obj` as JSON (one document, `indent` as the command always printed it) or as
    what `render(obj)` returns: a string or lines."""
    out = stream or sys.stdout
    if as_json:
        print(json.dumps(obj, indent=indent, default=str), file=out)
        return
    text = render(obj)
    print(text if isinstance(text, str) else "\n".join(text), file=out)


def key_values(pairs: Iterable[tuple[str, Any]], *, title: str | None = None,
               indent: str = "") -> str:  # fmt: skip
    """A block of `key: value` lines with the values aligned; None prints as '-'."""
    items = [(k, _cell(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    lines = [title] if title else []
    pad = indent + ("  " if title else "")
    lines += [f"{pad}{k + ':':<{width + 1}} {v}".rstrip() for k, v in items]
    return "\n".join(lines)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, indent: str = "",
          empty: str = "(none)") -> str:  # fmt: skip
    """Columns aligned under their headers; numbers right-aligned; `empty` when no rows."""
    body = [[_cell(v) for v in row] for row in rows]
    if not body:
        return indent + empty
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in body) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ]
        return (indent + "  ".join(parts)).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *map(line, body)])


def short_hash(value: str | None, n: int = 12) -> str:
    """A digest shortened for reading (the full one is in --json)."""
    return "-" if not value else f"{value[:n]}…"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return text == "-"
    return True

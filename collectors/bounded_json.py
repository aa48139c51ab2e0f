"""Untrusted record bytes → a JSON value within `ParseLimits`, or `InvalidEvent` with its reason.

First step inside the parser (collectors.events): the only decoder for record values, used by
`parse_record` and by `dead_letter_skeleton`, with no fallback that behaves differently.
orjson decodes (no recursion in Python, a built-in depth cap of 1,024, UTF-8 and surrogate
checks, integers beyond 64 bits read as floats and numbers beyond the double range refused);
an iterative walk then bounds the decoded tree (depth, keys, values, string lengths) before
any field is read, so no later step (pseudonyms, dead-letter redaction, jsonb encoding) meets
an unbounded value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from collectors.errors import InvalidEvent, Reason


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ParseLimits:
    """What the parser accepts and keeps; built from Settings by `radwatch collect`.

    The defaults are generous for the contract (an 8,192-value embedding, a few hundred
    findings) and far below what would hurt the worker. `image.uri` is exempt from
    `max_string_chars` (a `data:` URI may carry a whole small image); the record's size
    limit bounds it. No timestamp window by default: in-memory callers (simulations) may
    replay any period; the collector always sets one. The timestamp window and the extra
    fields are read by collectors.events; the rest bound the decoded tree here.
    """

    max_depth: int = 32
    max_string_chars: int = 4096
    max_key_chars: int = 256
    max_object_keys: int = 1024
    max_values: int = 65_536
    max_past: timedelta | None = None
    max_future: timedelta | None = None
    # Top-level extra fields kept on stored events; all others are dropped.
    extra_fields: frozenset[str] = frozenset()
    clock: Callable[[], datetime] = field(default=_utcnow, compare=False, repr=False)


DEFAULT_LIMITS = ParseLimits()

# orjson's messages for what it refuses, mapped to the limit's own reason (the message is
# fixed text in orjson; anything not matched stays `not_json`).
_ORJSON_REASONS = (
    ("depth limit", Reason.TOO_DEEP),
    ("recursion", Reason.TOO_DEEP),
    ("number is infinity", Reason.NUMBER_TOO_LARGE),
    ("out of range", Reason.NUMBER_TOO_LARGE),
    ("surrogate", Reason.BAD_UNICODE),
)
_NON_FINITE = ("NaN", "Infinity", "-Infinity")


def decode(raw: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> Any:
    """Untrusted bytes → a JSON value within `limits`, or InvalidEvent with its reason.

    The only decoder for record values (no fallback that behaves differently): orjson,
    then an iterative walk that enforces the limits on the decoded tree.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _decode_error(raw, exc) from None
    except RecursionError:  # not expected from orjson; never allowed past the parser
        raise InvalidEvent(Reason.TOO_DEEP, f"nested deeper than {limits.max_depth}") from None
    check_tree(doc, limits)
    return doc


def _decode_error(raw: bytes, exc: orjson.JSONDecodeError) -> InvalidEvent:
    """Why orjson refused the bytes, said without repeating any of them."""
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as bad:
        return InvalidEvent(Reason.NOT_UTF8, f"value is not UTF-8 (byte {bad.start})")
    msg = str(exc.msg)
    for fragment, reason in _ORJSON_REASONS:
        if fragment in msg:
            return InvalidEvent(reason, f"value refused by the JSON decoder: {msg[:80]}")
    if text.startswith(_NON_FINITE, max(0, exc.pos)):
        # Kept precise: a NaN/Infinity literal is a producer bug worth its own reason.
        return InvalidEvent(Reason.SCORE_NOT_FINITE, f"a number is NaN or Infinity at {exc.pos}")
    return InvalidEvent(Reason.NOT_JSON, f"value is not JSON: {msg[:80]} at {exc.pos}")


def check_tree(doc: Any, limits: ParseLimits) -> None:
    """Enforce depth, key count, value count and string length without recursion.

    Containers are visited breadth-first from an explicit stack; scalar-only arrays (the
    embedding) are checked with C-level `map`, not per item in Python.
    """
    exempt = _image_uri(doc)
    stack: list[tuple[Any, int]] = [(doc, 1)] if isinstance(doc, dict | list) else []
    if isinstance(doc, str) and len(doc) > limits.max_string_chars:
        raise InvalidEvent(Reason.STRING_TOO_LONG, "a string is too long")
    values = 0
    while stack:
        node, depth = stack.pop()
        if depth > limits.max_depth:
            raise InvalidEvent(Reason.TOO_DEEP, f"nested deeper than {limits.max_depth}")
        if type(node) is dict:
            if len(node) > limits.max_object_keys:
                raise InvalidEvent(
                    Reason.TOO_MANY_KEYS, f"an object has more than {limits.max_object_keys} keys"
                )
            if node and max(map(len, node)) > limits.max_key_chars:
                raise InvalidEvent(
                    Reason.STRING_TOO_LONG, f"a key is longer than {limits.max_key_chars}"
                )
            items: Any = node.values()
        else:
            items = node
        values += len(node)
        if values > limits.max_values:
            raise InvalidEvent(
                Reason.TOO_MANY_KEYS, f"the document holds more than {limits.max_values} values"
            )
        kinds = set(map(type, items))
        if str in kinds:
            for item in items:
                if type(item) is str and len(item) > limits.max_string_chars and item is not exempt:
                    raise InvalidEvent(
                        Reason.STRING_TOO_LONG,
                        f"a string is longer than {limits.max_string_chars} characters",
                    )
        if dict in kinds or list in kinds:
            stack.extend((item, depth + 1) for item in items if type(item) in (dict, list))


def _image_uri(doc: Any) -> Any:
    # The one string exempt from `max_string_chars` (see ParseLimits): the event's image.uri.
    image = doc.get("image") if type(doc) is dict else None
    return image.get("uri") if type(image) is dict else None

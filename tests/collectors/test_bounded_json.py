"""Untrusted bytes → a bounded JSON value (collectors.bounded_json), called directly.

The same limits are exercised through `parse_record` in test_events.py and test_events_fuzz.py;
here each refusal is checked at the decoder itself, as `dead_letter_skeleton` also calls it.
"""

from __future__ import annotations

import json

import pytest

from collectors.bounded_json import DEFAULT_LIMITS, ParseLimits, check_tree, decode
from collectors.errors import InvalidEvent, Reason

SMALL = ParseLimits(max_depth=3, max_string_chars=8, max_key_chars=5, max_object_keys=3,
                    max_values=10)  # fmt: skip


def refusal(raw: bytes, limits: ParseLimits = SMALL) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        decode(raw, limits)
    assert str(info.value) == info.value.message
    return info.value


def test_values_within_the_limits_decode_as_json() -> None:
    doc = {"a": [1, 2.5, None], "b": {"c": "short"}}
    assert decode(json.dumps(doc).encode(), SMALL) == doc
    assert decode(b'"a string"', SMALL) == "a string"
    assert decode(b"18446744073709551616") == 18446744073709551616.0  # beyond 64 bits: a float


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", Reason.NOT_UTF8),
        (b"{not json", Reason.NOT_JSON),
        (b"[NaN]", Reason.SCORE_NOT_FINITE),
        (b"[-Infinity]", Reason.SCORE_NOT_FINITE),
        (b"1" * 400, Reason.NUMBER_TOO_LARGE),
        (b'"\\ud800"', Reason.BAD_UNICODE),
        (b"[" * 2000 + b"]" * 2000, Reason.TOO_DEEP),  # past orjson's own cap
        (b"[[[[1]]]]", Reason.TOO_DEEP),  # past max_depth=3
        (b'"123456789"', Reason.STRING_TOO_LONG),
        (b'{"a": ["123456789"]}', Reason.STRING_TOO_LONG),
        (b'{"123456": 1}', Reason.STRING_TOO_LONG),  # a key
        (b'{"a": 1, "b": 2, "c": 3, "d": 4}', Reason.TOO_MANY_KEYS),
        (json.dumps([[0] * 6, [0] * 6]).encode(), Reason.TOO_MANY_KEYS),  # values, all levels
    ],
)
def test_each_refusal_has_its_own_reason(raw: bytes, reason: Reason) -> None:
    assert refusal(raw).reason == reason


def test_messages_never_repeat_the_bytes() -> None:
    for raw in (b'{"PHIMARKER": x}', b'"PHIMARKER-long-string"', b"PHIMARKER"):
        assert "PHIMARKER" not in refusal(raw).message


def test_only_the_image_uri_is_exempt_from_the_string_limit() -> None:
    uri = "data:application/dicom;base64," + "A" * 100
    assert decode(json.dumps({"image": {"uri": uri}}).encode(), SMALL)["image"]["uri"] == uri
    for doc in ({"image": {"other": uri}}, {"uri": uri}, {"x": {"image": {"uri": uri}}}):
        assert refusal(json.dumps(doc).encode()).reason == Reason.STRING_TOO_LONG, doc


def test_the_walk_is_iterative_and_the_defaults_are_the_contract() -> None:
    deep: list = []
    node = deep
    for _ in range(50_000):  # far deeper than Python's recursion limit
        node.append([])
        node = node[0]
    with pytest.raises(InvalidEvent) as info:
        check_tree(deep, DEFAULT_LIMITS)
    assert info.value.reason == Reason.TOO_DEEP
    assert (DEFAULT_LIMITS.max_depth, DEFAULT_LIMITS.max_string_chars) == (32, 4096)

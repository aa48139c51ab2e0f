"""The contract in the repository (docs/contract/) and the parser agree, so they cannot drift.

Every example validates against its JSON Schema (draft 2020-12, formats checked) and parses;
every invalid example is refused by the schema and by the parser with the reason stated in
examples/invalid/reasons.json. Then Hypothesis draws documents from the schemas themselves
(a small interpreter of the keywords they use, below: hypothesis-jsonschema 0.23 does not run
on this Hypothesis), keeps those the schema validator accepts, and checks that both parsing
paths accept each one. The one rule JSON Schema cannot state (an evidence span's end is not
before its start) is named in the schema's text and applied to drawn documents explicitly.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from collectors.bounded_json import DEFAULT_LIMITS
from collectors.event_types import INTERACTION_SCHEMA, InteractionEvent
from collectors.events import (
    INFERENCE_SCHEMA,
    LABEL_SCHEMA,
    InferenceEvent,
    LabelEvent,
    Rejection,
    parse_record,
    parse_reference,
)
from collectors.pseudonym import Pseudonymiser
from collectors.publisher import serialise

CONTRACT = Path(__file__).resolve().parents[2] / "docs" / "contract"
P = Pseudonymiser(b"contract-test-key-0123456789")
MAX_BYTES = 1 << 20
SCHEMAS = {
    kind: json.loads((CONTRACT / f"{kind}.v1.schema.json").read_text())
    for kind in ("inference", "label", "interaction")
}
NAMES = {"inference": INFERENCE_SCHEMA, "label": LABEL_SCHEMA, "interaction": INTERACTION_SCHEMA}
TYPES = {"inference": InferenceEvent, "label": LabelEvent, "interaction": InteractionEvent}


@functools.cache
def validator(kind: str) -> Draft202012Validator:
    schema = SCHEMAS[kind]
    Draft202012Validator.check_schema(schema)
    # Formats checked (date-time needs rfc3339-validator, a dev dependency): a schema that
    # only said "string" there would accept 30 February.
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def parse(doc: Any, kind: str, *, fast: bool = True) -> object:
    # The contract's serialisation (collectors.publisher.serialise): compact UTF-8 JSON.
    raw = serialise(doc)
    how = parse_record if fast else parse_reference
    return how(raw, default_schema=NAMES[kind], pseudonym=P, max_bytes=MAX_BYTES,
               limits=DEFAULT_LIMITS)  # fmt: skip


def _examples(folder: str) -> list[Path]:
    return sorted((CONTRACT / "examples" / folder).glob("*.json"))


def _kind(path: Path) -> str:
    return path.name.split("-", 1)[0]


@pytest.mark.parametrize("path", _examples("valid"), ids=lambda p: p.name)
def test_every_valid_example_validates_and_parses(path: Path) -> None:
    doc = json.loads(path.read_text())
    kind = _kind(path)
    validator(kind).validate(doc)
    event = parse(doc, kind)
    assert isinstance(event, TYPES[kind]), event
    assert event == parse(doc, kind, fast=False)


REASONS = json.loads((CONTRACT / "examples" / "invalid" / "reasons.json").read_text())


@pytest.mark.parametrize("path", [p for p in _examples("invalid") if p.name != "reasons.json"],
                         ids=lambda p: p.name)  # fmt: skip
def test_every_invalid_example_is_refused_by_both_with_the_stated_reason(path: Path) -> None:
    doc = json.loads(path.read_text())
    kind = _kind(path)
    assert not validator(kind).is_valid(doc)
    result = parse(doc, kind)
    assert isinstance(result, Rejection), result
    assert result.reason == REASONS[path.name]


def test_every_invalid_example_has_its_reason_and_the_examples_cover_the_new_fields() -> None:
    named = {p.name for p in _examples("invalid")} - {"reasons.json"}
    assert named == set(REASONS)
    by_accession = json.loads(
        (CONTRACT / "examples" / "valid" / "label-by-accession-derived.json").read_text()
    )
    assert "study_uid" not in by_accession["study"]
    assert {"labeler", "evidence"} <= set(by_accession)
    kinds = {_kind(p) for p in _examples("valid")} & {_kind(p) for p in _examples("invalid")}
    assert kinds == set(SCHEMAS)


# -- documents drawn from the schemas ---------------------------------------------------------------


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _string(node: dict[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = node.get("minLength", 0), min(node.get("maxLength", 24), 24)
    pattern = node.get("pattern")
    if node.get("format") == "date-time":
        return (
            st.from_regex(pattern, fullmatch=True) if pattern else st.just("2026-11-28T10:15:00Z")
        )
    if pattern and pattern.startswith("^") and pattern.endswith("$"):
        return st.from_regex(pattern[1:-1], fullmatch=True)
    # Short strings mostly, and strings at the schema's maxLength, so a bound in the schema
    # looser than the parser's is found.
    longest = node.get("maxLength")
    text = st.text(min_size=lo, max_size=max(lo, hi))
    if longest is not None and longest > hi and longest <= 1024:
        text = st.one_of(text, st.text(min_size=longest, max_size=longest))
    return text.filter(lambda s: re.search(pattern, s) is not None) if pattern else text


def draw_from(node: dict[str, Any], root: dict[str, Any], draw: st.DrawFn) -> Any:
    node = _resolve(node, root)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return draw(st.sampled_from(node["enum"]))
    for key in ("oneOf", "anyOf"):
        if key in node and "type" not in node:
            return draw_from(draw(st.sampled_from(node[key])), root, draw)
    if "allOf" in node:
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            merged.update(_resolve(part, root))
        return draw_from({**merged, **{k: v for k, v in node.items() if k != "allOf"}}, root, draw)
    kind = node.get("type")
    if kind == "string":
        return draw(_string(node))
    if kind == "integer":
        return draw(st.integers(node.get("minimum", -(2**63)), node.get("maximum", 2**63 - 1)))
    if kind == "number":
        lo, hi = node.get("minimum", -1e300), node.get("maximum", 1e300)
        return draw(st.one_of(st.floats(lo, hi), st.integers(int(lo), int(hi))))
    if kind == "boolean":
        return draw(st.booleans())
    if kind == "null":
        return None
    if kind == "array":
        size = draw(st.integers(node.get("minItems", 0), min(node.get("maxItems", 4), 4)))
        return [draw_from(node["items"], root, draw) for _ in range(size)]
    if kind == "object":
        return _object(node, root, draw)
    raise AssertionError(f"the contract test does not interpret {node}")


def _object(node: dict[str, Any], root: dict[str, Any], draw: st.DrawFn) -> dict[str, Any]:
    props = node.get("properties", {})
    required = set(node.get("required", ()))
    if "anyOf" in node:  # a label's study: by study_uid, by accession (or both)
        required |= set(draw(st.sampled_from(node["anyOf"]))["required"])
    out: dict[str, Any] = {}
    for name, sub in props.items():
        if name in required or draw(st.booleans()):
            out[name] = draw_from(sub, root, draw)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        names = _resolve(node.get("propertyNames", {"type": "string"}), root)
        wanted = node.get("minProperties", 0) - len(out)
        for _ in range(max(wanted, draw(st.integers(0, 3)))):
            key = draw(_string({"type": "string", **names, "minLength": names.get("minLength", 1)}))
            if key not in props:
                out[key] = draw_from(extra, root, draw)
    return out


@st.composite
def documents(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = draw_from(SCHEMAS[kind], SCHEMAS[kind], draw)
    for span in (doc.get("evidence") or {}).values():
        # The cross-field rule the schema states in words: end is not before start.
        span["start"], span["end"] = sorted((span["start"], span["end"]))
    return doc


DRAWN = settings(max_examples=150, derandomize=True, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])  # fmt: skip


@pytest.mark.parametrize("kind", ["inference", "label", "interaction"])
@DRAWN
@given(data=st.data())
def test_documents_the_schema_accepts_are_accepted_by_both_parsing_paths(
    kind: str, data: st.DataObject
) -> None:
    doc = data.draw(documents(kind))
    assume(validator(kind).is_valid(doc))
    event = parse(doc, kind)
    assert isinstance(event, TYPES[kind]), (doc, event)
    assert event == parse(doc, kind, fast=False)

"""The optional radwatch.interaction.v1 event: parsed, refused with a reason, never raising.

Through collectors.events.parse_record (the path the worker uses): a valid event by UID and by
accession, each invalid field with its reason code, identifiers pseudonymised with the same
kinds as a label's (planted markers are nowhere in the event), a name in `user_role` reduced
to "other", and Hypothesis: no bytes or object make the parser raise.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.errors import Reason
from collectors.event_types import INTERACTION_SCHEMA, AccessionRef, InteractionEvent, StudyRef
from collectors.events import LABEL_SCHEMA, Rejection, parse_record
from collectors.pseudonym import Pseudonymiser

P = Pseudonymiser(b"interaction-test-key-0123456789")
UID_MARKER = "1.2.826.0.1.PHI.MARKER.77"
ACC_MARKER = "ACC-PHI-MARKER-9911"


def interaction(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": INTERACTION_SCHEMA, "event_id": "int-1", "occurred_at": "2026-11-28T10:31:12Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"},
        "study": {"study_uid": UID_MARKER, "accession": ACC_MARKER}, "action": "accepted",
        "viewed": True, "time_to_read_s": 42.5, "user_role": "radiologist",
    }  # fmt: skip
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def parse(doc: Any, default: str = INTERACTION_SCHEMA) -> object:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return parse_record(raw, default_schema=default, pseudonym=P, max_bytes=1 << 20)


def test_a_valid_interaction_is_parsed_with_pseudonymised_identifiers() -> None:
    event = parse(interaction())
    assert isinstance(event, InteractionEvent), event
    assert event.study == StudyRef(P("study_uid", UID_MARKER), accession=P("accession", ACC_MARKER))
    assert (event.model_name, event.model_version, event.action) == ("cxr-nodule", "1.4.2",
                                                                     "accepted")  # fmt: skip
    assert (event.viewed, event.time_to_read_s, event.user_role) == (True, 42.5, "radiologist")
    assert UID_MARKER not in repr(event) and ACC_MARKER not in repr(event)


def test_by_accession_alone_and_with_only_the_required_fields() -> None:
    doc = interaction(study={"accession": ACC_MARKER}, viewed=..., time_to_read_s=...,
                      user_role=..., schema=...)  # fmt: skip
    event = parse(doc)  # the topic's default schema names it
    assert isinstance(event, InteractionEvent), event
    # The same kind as a label's accession: the two join the same inference.
    assert event.study == AccessionRef(P("accession", ACC_MARKER))
    assert (event.viewed, event.time_to_read_s, event.user_role) == (None, None, None)


def test_a_name_in_user_role_is_not_kept_and_unknown_fields_are_not_stored() -> None:
    event = parse(interaction(user_role="Dr Jane PHI-NAME", reader="Dr Jane PHI-NAME"))
    assert isinstance(event, InteractionEvent), event
    assert event.user_role == "other"
    assert "PHI-NAME" not in repr(event)


def test_a_dismissal_may_be_unseen() -> None:
    event = parse(interaction(action="dismissed", viewed=False))
    assert isinstance(event, InteractionEvent) and event.viewed is False


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"event_id": ...}, Reason.MISSING_FIELD),
        ({"event_id": ""}, Reason.WRONG_TYPE),
        ({"model": ...}, Reason.MISSING_FIELD),
        ({"model": {"name": ""}}, Reason.WRONG_TYPE),
        ({"model": {"name": "m", "version": 3}}, Reason.WRONG_TYPE),
        ({"occurred_at": "yesterday"}, Reason.BAD_TIMESTAMP),
        ({"study": ...}, Reason.MISSING_FIELD),
        ({"study": {}}, Reason.MISSING_FIELD),
        ({"study": {"study_uid": " "}}, Reason.WRONG_TYPE),
        ({"study": {"accession": True}}, Reason.WRONG_TYPE),
        ({"action": ...}, Reason.MISSING_FIELD),
        ({"action": "liked"}, Reason.WRONG_TYPE),
        ({"action": 1}, Reason.WRONG_TYPE),
        ({"viewed": "yes"}, Reason.WRONG_TYPE),
        ({"viewed": False}, Reason.WRONG_TYPE),  # accepted yet unseen
        ({"time_to_read_s": -1}, Reason.SCORE_OUT_OF_RANGE),
        ({"time_to_read_s": 86_401}, Reason.SCORE_OUT_OF_RANGE),
        ({"time_to_read_s": "12"}, Reason.WRONG_TYPE),
        ({"time_to_read_s": True}, Reason.WRONG_TYPE),
        ({"user_role": 7}, Reason.WRONG_TYPE),
        ({"schema": "radwatch.interaction.v2"}, Reason.UNKNOWN_SCHEMA),
    ],
    ids=lambda v: json.dumps(v, default=str) if isinstance(v, dict) else str(v),
)
def test_each_invalid_field_has_its_reason(changes: dict[str, Any], reason: Reason) -> None:
    result = parse(interaction(**changes))
    assert isinstance(result, Rejection), result
    assert result.reason == reason
    # Messages name the field, never the value (it comes from the producer).
    assert UID_MARKER not in result.message and ACC_MARKER not in result.message


def test_an_interaction_on_the_labels_topic_is_still_an_interaction() -> None:
    # The `schema` field wins over the topic's default, as for the other kinds.
    assert isinstance(parse(interaction(), default=LABEL_SCHEMA), InteractionEvent)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),  # fmt: skip
    max_leaves=12,
)
_FIELDS = ["event_id", "occurred_at", "model", "study", "action", "viewed", "time_to_read_s",
           "user_role", "schema"]  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=9), st.data())
def test_no_object_makes_the_parser_raise(fields: dict[str, Any], data: st.DataObject) -> None:
    # Start from a valid event and replace some fields with anything: every field's checks run.
    doc = {**interaction(), **fields}
    if data.draw(st.booleans()):
        doc["schema"] = INTERACTION_SCHEMA
    result = parse(doc)
    assert isinstance(result, InteractionEvent | Rejection)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=200))
def test_no_bytes_make_the_parser_raise(raw: bytes) -> None:
    assert isinstance(parse(raw), InteractionEvent | Rejection)

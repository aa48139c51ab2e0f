"""The plan file: the default plan round-trips, bad files are one-line errors naming the field,
hostile YAML never escapes as anything but PlanError (Hypothesis), diffs say what changed."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.plan.document import (
    MAX_PLAN_BYTES,
    SHIFT_TYPES,
    PlanError,
    default_plan,
    diff,
    dump,
    parse,
)


def test_the_default_plan_round_trips_and_names_every_clause():
    plan = default_plan("cxr-nodule")
    assert parse(dump(plan), model="cxr-nodule") == plan
    clauses = plan.clauses()
    assert {f"incident_types.{t}" for t in SHIFT_TYPES} <= set(clauses)
    assert "stop_rules.integration-fault" in clauses and "false_alarm_budget" in clauses
    assert plan.incident_clause("acquisition") == "incident_types.acquisition"
    assert [r.id for r in plan.stop_rules_for("integration")] == ["integration-fault"]


def _doc(**changes):
    doc = default_plan("cxr-nodule").model_dump(mode="json")
    doc.update(changes)
    return yaml.safe_dump(doc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a list", "must be a YAML mapping"),
        ("model: [unclosed", "not YAML"),
        (_doc(version=""), "version"),
        (_doc(false_alarm_budget={"incidents": 0, "days": 90}), "false_alarm_budget.incidents"),
        (_doc(windows={"drift": 200, "bogus": 1}), "windows.bogus"),
        (_doc(signals=["scores", "scores"]), "without repeats"),
        (_doc(stop_rules=[{"id": "x", "description": "d"}]), "shift_type, or on a metric"),
        (
            _doc(stop_rules=[{"id": "x", "description": "d", "metric": "specificity"}]),
            "needs both metric and below",
        ),
        (
            _doc(stop_rules=[{"id": "Bad Id", "description": "d", "shift_type": "integration"}]),
            "stop_rules.0.id",
        ),
        (_doc(incident_types={}), "missing"),
        ("a: " + "[" * 3000, "nested too deeply|not YAML"),
    ],
)
def test_a_bad_plan_is_one_line_naming_what_is_wrong(text, expected):
    with pytest.raises(PlanError) as err:
        parse(text)
    message = str(err.value)
    assert "\n" not in message
    assert any(part in message for part in expected.split("|")), message


def test_a_plan_for_another_model_and_a_huge_file_are_refused():
    with pytest.raises(PlanError, match="for model 'cxr-nodule', not 'mammo'"):
        parse(dump(default_plan("cxr-nodule")), model="mammo")
    with pytest.raises(PlanError, match="at most"):
        parse("a: b\n" * (MAX_PLAN_BYTES // 5 + 1))


def test_version_given_as_a_number_is_text_and_the_diff_names_the_change():
    old = default_plan("cxr-nodule")
    new = parse(_doc(version=2, false_alarm_budget={"incidents": 1, "days": 180}))
    assert new.version == "2"
    change = diff(old, new)
    assert "-  days: 90.0" in change and "+  days: 180.0" in change, change
    assert diff(old, old) == ""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=5)
                 | st.dictionaries(st.text(max_size=12), kids, max_size=5),
                 max_leaves=40).map(lambda d: yaml.safe_dump({"model": "m", "version": "1",
                                                               "extra": d})),
))  # fmt: skip
def test_hostile_input_is_only_ever_a_plan_error(data):
    try:
        parse(data)
    except PlanError as exc:
        assert "\n" not in str(exc)

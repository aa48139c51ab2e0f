"""The audit action catalogue (monitor.audit.actions): every action the product records is in
it, `trail.record` refuses one that is not, and the FHIR export codes actions and outcomes
from it: a decision taken (alert opened, acknowledged, resolved) is outcome 0, only a real
failure (a stop on error, a failed model pass, a partial backfill) is 4, 8 or 12."""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import model_status
from monitor.alerts import lifecycle
from monitor.audit import trail
from monitor.audit.actions import (
    DCM,
    MAJOR_FAILURE,
    SERIOUS_FAILURE,
    SPECS,
    SUCCESS,
    AuditAction,
    UnknownAuditAction,
)
from monitor.audit.export import export, read_ndjson, to_fhir
from monitor.audit.trail import AuditError, AuditRecord, read_records, record
from monitor.store import db

ROOT = Path(__file__).resolve().parents[3]
PRODUCT = ("monitor", "collectors", "detectors")

# -- every action recorded anywhere in the product is catalogued (read from the source) -------


def _literal_aliases(tree: ast.Module) -> dict[str, list[str]]:
    """Module-level `X = Literal["a", "b"]` and `X = "a"` / `X, Y = "a", "b"` names."""
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = node.value
        for target in targets:
            if isinstance(target, ast.Name) and value is not None:
                if (isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name)
                        and value.value.id == "Literal"):  # fmt: skip
                    items = (
                        value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
                    )
                    found[target.id] = [i.value for i in items if isinstance(i, ast.Constant)]
                elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found[target.id] = [value.value]
            elif isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple):
                for name, item in zip(target.elts, value.elts, strict=False):
                    if isinstance(name, ast.Name) and isinstance(item, ast.Constant):
                        found[name.id] = [item.value]
    return found


def _parameter_values(func: ast.FunctionDef | None, name: str,
                      aliases: dict[str, list[str]]) -> list[str] | None:  # fmt: skip
    """The values a parameter may take, from its `Literal` annotation (direct or aliased)."""
    if func is None:
        return None
    args = [*func.args.posonlyargs, *func.args.args, *func.args.kwonlyargs]
    for arg in args:
        if arg.arg == name and isinstance(arg.annotation, ast.Name):
            return aliases.get(arg.annotation.id)
    return None


def _values(node: ast.expr, func: ast.FunctionDef | None,
            aliases: dict[str, list[str]]) -> list[str] | None:  # fmt: skip
    """Every string `node` can evaluate to, or None where the source does not say."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _values(node.body, func, aliases), _values(node.orelse, func, aliases)
        return None if body is None or orelse is None else body + orelse
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "AuditAction"):  # fmt: skip
        return [AuditAction[node.attr].value]
    if isinstance(node, ast.Name):
        return _parameter_values(func, node.id, aliases) or aliases.get(node.id)
    if isinstance(node, ast.JoinedStr):  # f"{component}.model_failed": expand each part
        parts: list[list[str]] = []
        for piece in node.values:
            if isinstance(piece, ast.Constant):
                parts.append([str(piece.value)])
            elif isinstance(piece, ast.FormattedValue):
                inner = _values(piece.value, func, aliases)
                if inner is None:
                    return None
                parts.append(inner)
        return ["".join(p) for p in itertools.product(*parts)]
    return None


Site = tuple[ast.Call, ast.FunctionDef | None]


def _functions(tree: ast.AST) -> Iterator[Site]:
    """Every call with its innermost enclosing function."""

    def walk(node: ast.AST, func: ast.FunctionDef | None) -> Iterator[Site]:
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, ast.FunctionDef) else func
            if isinstance(child, ast.Call):
                yield child, func
            yield from walk(child, inner)

    yield from walk(tree, None)


def _is_audit_record(call: ast.Call) -> bool:
    f = call.func
    return (isinstance(f, ast.Name) and f.id == "record") or (
        isinstance(f, ast.Attribute) and f.attr == "record"
        and isinstance(f.value, ast.Name) and f.value.id == "trail"
    )  # fmt: skip


Scan = tuple[dict[str, list[str]], list[str], list[tuple[str, str, str]]]


def scan(sources: dict[str, str]) -> Scan:
    """(action -> where it is recorded, unreadable call sites, (where, action, outcome))."""
    actions: dict[str, list[str]] = {}
    unreadable: list[str] = []
    outcomes: list[tuple[str, str, str]] = []
    for rel, source in sources.items():
        tree = ast.parse(source, filename=rel)
        aliases = _literal_aliases(tree)
        for call, func in _functions(tree):
            where = f"{rel}:{call.lineno}"
            if _is_audit_record(call):
                kw = {k.arg: k.value for k in call.keywords}
                names = _values(kw["action"], func, aliases) if "action" in kw else None
                if names is None:
                    unreadable.append(where)
                    continue
                for name in names:
                    actions.setdefault(name, []).append(where)
                said = _values(kw["outcome"], func, aliases) if "outcome" in kw else ["success"]
                outcomes += [(where, n, o) for n in names for o in (said or [])]
        # Actions named in SQL (e.g. the last start's configuration, read back).
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for name in re.findall(r"\baction\s*=\s*'([^'%]+)'", node.value):
                    actions.setdefault(name, []).append(f"{rel}:{node.lineno} (SQL)")
    return actions, unreadable, outcomes


def recorded_actions() -> Scan:
    paths = sorted(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py"))
    return scan({str(p.relative_to(ROOT)): p.read_text() for p in paths})


def test_the_scan_sees_formed_actions_and_flags_what_it_cannot_read():
    source = """
from typing import Literal
from monitor.audit import trail
Part = Literal["drift", "ingest"]
DONE = "finished"

def f(conn, part: Part, name: str, ok: bool):
    trail.record(conn, actor="a", action=f"{part}.exploded", entity_type="x", entity_id="1",
                 outcome=DONE if ok else "failure")
    trail.record(conn, actor="a", action=name, entity_type="x", entity_id="1")
    conn.execute("SELECT 1 FROM audit_events WHERE action = 'sql.named'")
"""
    actions, unreadable, outcomes = scan({"m.py": source})
    assert set(actions) == {"drift.exploded", "ingest.exploded", "sql.named"}
    assert unreadable == ["m.py:10"]  # `action=name`: not knowable from the source
    assert {(a, o) for _, a, o in outcomes} == {(a, o) for a in ("drift.exploded", "ingest.exploded")
                                                 for o in ("finished", "failure")}  # fmt: skip


def test_every_action_recorded_in_the_product_is_catalogued_with_its_codes():
    actions, unreadable, outcomes = recorded_actions()
    assert not unreadable, f"trail.record calls whose action the source does not name: {unreadable}"
    # The scan itself works: it finds the plain, the SQL and the f-string-formed actions.
    assert {"alert.acknowledged", "radwatch.start", "drift.model_failed",
            "performance.model_recovered", "audit.export"} <= set(actions)  # fmt: skip
    missing = {name: where for name, where in actions.items() if name not in set(AuditAction)}
    assert not missing, f"recorded but not in monitor.audit.actions.AuditAction: {missing}"
    for name in actions:
        spec = AuditAction(name).spec
        assert spec.fhir_action in ("C", "R", "U", "D", "E") and spec.outcomes
        assert set(spec.outcomes.values()) <= {"0", "4", "8", "12"}
    unmapped = [(w, a, o) for w, a, o in outcomes if o not in AuditAction(a).spec.outcomes]
    assert not unmapped, f"outcomes the catalogue does not map: {unmapped}"


def test_the_catalogue_codes_match_the_standards():
    assert set(SPECS) == set(AuditAction)
    for member, spec in SPECS.items():
        if spec.dicom_type is not None:  # DICOM PS3.16 CID 400: 110100..110114
            assert spec.dicom_type.system == DCM and 110100 <= int(spec.dicom_type.code) <= 110114
        if spec.dicom_subtype is not None:  # CID 401/403: 110120..110142
            assert spec.dicom_type is not None, member
            assert 110120 <= int(spec.dicom_subtype.code) <= 110142
    with pytest.raises(UnknownAuditAction, match="unknown audit action 'window.decision'"):
        AuditAction.of("window.decision")
    with pytest.raises(UnknownAuditAction, match="has no outcome 'success'.*acknowledged"):
        AuditAction.ALERT_ACKNOWLEDGED.outcome_code("success")


# -- the FHIR codes of single rows ------------------------------------------------------------


def row(action: str, outcome: str, seq: int = 1) -> AuditRecord:
    return AuditRecord(seq, datetime(2026, 11, 28, tzinfo=UTC), "qa.lead", action, "alert", "7",
                       None, outcome, None, {}, {}, "0" * 64, "1" * 64)  # fmt: skip


@pytest.mark.parametrize(
    ("action", "outcome", "code", "fhir_action"),
    [
        ("alert.opened", "open", "0", "C"),
        ("alert.updated", "acknowledged", "0", "U"),
        ("alert.acknowledged", "acknowledged", "0", "U"),
        ("alert.resolved", "resolved", "0", "U"),
        ("alert.notified", "firing", "0", "C"),
        ("drift.window", "drift", "0", "E"),
        ("performance.window", "degraded", "0", "E"),
        ("radwatch.stop", "success", "0", "E"),
        ("embeddings.backfilled", "partial", "4", "R"),
        ("drift.model_failed", "failure", "8", "E"),
        ("radwatch.stop", "failure", "12", "E"),
    ],
)
def test_fhir_outcome_and_action_come_from_the_catalogue(action, outcome, code, fhir_action):
    event = to_fhir(row(action, outcome))
    assert (event["outcome"], event["action"]) == (code, fhir_action)


def test_export_refuses_a_row_the_catalogue_cannot_code():
    with pytest.raises(AuditError, match="audit row 9: unknown audit action 'hand.written'"):
        to_fhir(row("hand.written", "success", seq=9))
    with pytest.raises(AuditError, match="audit row 3: .*no outcome 'weird'"):
        to_fhir(row("alert.opened", "weird", seq=3))


# -- against PostgreSQL: what the product records exports with the right outcome --------------


def test_record_refuses_an_unknown_action_or_outcome_and_writes_nothing(database_url):
    with db.connect(database_url, autocommit=True) as conn:
        before = len(list(read_records(conn)))
        with pytest.raises(AuditError, match="unknown audit action 'window.decision'"):
            record(conn, actor="radwatch", action="window.decision", entity_type="window",
                   entity_id="w1")  # fmt: skip
        with pytest.raises(AuditError, match="'alert.opened' has no outcome 'success'"):
            record(conn, actor="radwatch", action="alert.opened", entity_type="alert",
                   entity_id="1")  # fmt: skip
        assert len(list(read_records(conn))) == before
        # A member and its string are the same action, stored as the string.
        stored = record(conn, actor="radwatch", action=AuditAction.PERFORMANCE_EVALUATE,
                        entity_type="model", entity_id="m")  # fmt: skip
        assert type(stored.action) is str and stored.action == "performance.evaluate"
        assert list(read_records(conn))[-1].action == "performance.evaluate"


def test_alert_lifecycle_and_failures_export_with_the_right_outcomes(database_url, tmp_path):
    t0 = datetime(2026, 11, 28, tzinfo=UTC)
    policy = lifecycle.AlertPolicy(open_after=1, resolve_after=1)
    with db.connect(database_url, autocommit=True) as conn:

        def observe(i: int, firing: bool) -> lifecycle.AlertChange | None:
            return lifecycle.observe(conn, model="cxr-nodule", stratum_kind="all", stratum_value="*",
                                  signal="mmd", firing=firing, details={"p": 0.001},
                                  window_end=t0 + timedelta(hours=i), actor="radwatch",
                                  policy=policy)  # fmt: skip

        opened = observe(0, True)
        assert opened is not None and opened.action == "opened"
        lifecycle.acknowledge(conn, opened.alert_id, by="qa.lead", note="new scanner")
        assert observe(1, True) is not None  # updated, still acknowledged
        lifecycle.resolve(conn, opened.alert_id, by="qa.lead", note="recalibrated")
        reopened = observe(2, True)
        assert reopened is not None and observe(3, False) is not None  # resolved automatically
        # Real failures: a model's pass failing, a component stopping on an error.
        model_status.record_pass(
            conn, "cxr-nodule", "drift", RuntimeError("boom"), actor="radwatch"
        )
        trail.record_stop(conn, component="collector", outcome="failure", reason="OperationalError")
        result = export(conn, tmp_path / "audit.ndjson", fmt="fhir")
    events = {e.id: e for e in read_ndjson(result.path)}
    with db.connect(database_url) as conn:
        stored = [r for r in read_records(conn) if r.action != "audit.export"]
    assert len(events) == len(stored)
    by_action: dict[str, set[str]] = {}
    for r in stored:
        by_action.setdefault(r.action, set()).add(events[f"radwatch-audit-{r.seq}"].outcome)
    for action in ("alert.opened", "alert.acknowledged", "alert.updated", "alert.resolved"):
        assert by_action[action] == {SUCCESS}, (action, by_action)
    assert by_action["drift.model_failed"] == {SERIOUS_FAILURE}
    assert by_action["radwatch.stop"] == {MAJOR_FAILURE}
    stop = next(e for e in events.values() if e.subtype and e.subtype[0].code == "110121")
    assert stop.type.code == "110100" and stop.outcomeDesc == "OperationalError"

"""`radwatch plan show|validate|diff|approve|check|render`: the monitoring plan radwatch runs.

The edge of monitor/plan/: the plan file is validated and diffed here without touching the
database; `approve` puts it in force (audited with its diff); `show` prints the plan in force
and what its false-alarm budget derives; `check` and `render` say what it can and cannot see.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monitor.commands.incidents_cmd import someone
from monitor.config import Settings
from monitor.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plan", help="the post-market monitoring plan: show, validate, diff, approve, check, render",
        description="Example: radwatch plan approve --model cxr-nodule plan.yaml --by qa.lead",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="the plan in force and what it derives")
    show.add_argument("--model", required=True)
    show.add_argument("--json", action="store_true")
    show.add_argument("--yaml", action="store_true", help="the plan file itself")
    show.set_defaults(handler=_show)
    validate = actions.add_parser("validate", help="check a plan file against the schema")
    validate.add_argument("file", type=Path)
    validate.set_defaults(handler=_validate)
    diff = actions.add_parser("diff", help="what a plan file changes against the plan in force")
    diff.add_argument("--model", required=True)
    diff.add_argument("file", type=Path)
    diff.set_defaults(handler=_diff)
    approve = actions.add_parser("approve", help="put a plan file in force (audited, with diff)")
    approve.add_argument("--model", required=True)
    approve.add_argument("file", type=Path)
    approve.add_argument("--by", required=True, type=someone, help="who approves")
    approve.add_argument("--note")
    approve.set_defaults(handler=_approve)


def read_plan(path: Path, model: str | None = None):  # -> Plan
    from monitor.plan.document import MAX_PLAN_BYTES, PlanError, parse

    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    try:
        return parse(raw, model=model)
    except PlanError as exc:
        raise UsageError(f"{path}: {exc}") from None


def _conn(settings: Settings, *, write: bool = False):
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    url = resolve_endpoints(settings, read_only=not write, broker=False, retry=False).database_url
    return db.connect(url)


def _show(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.plan.document import dump
    from monitor.reports import plan_summary as summary

    with _conn(settings) as conn:
        shown = summary.shown(conn, args.model, settings)
    if args.yaml:
        print(dump(shown.plan), end="")
    elif args.json:
        print(json.dumps(shown.as_json(), indent=2, default=str))
    else:
        print("\n".join(shown.lines()))
    return 0


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    plan = read_plan(args.file)
    print(f"{args.file}: a valid plan, version {plan.version}, for model {plan.model} "
          f"({len(plan.clauses())} clauses, {len(plan.stop_rules)} stop rules)")  # fmt: skip
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.plan import store
    from monitor.plan.document import diff

    plan = read_plan(args.file, args.model)
    with _conn(settings) as conn:
        current = store.in_force(conn, args.model, budget=_budget(settings))
    change = diff(current.plan, plan)
    print(change or f"{args.file} says what the plan in force ({current.plan.version}) says")
    return 0


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.plan import store
    from monitor.plan.document import PlanError

    plan = read_plan(args.file, args.model)
    with _conn(settings, write=True) as conn:
        try:
            change = store.approve(conn, plan, by=args.by, note=args.note)
        except PlanError as exc:
            raise UsageError(str(exc)) from None
    lines = change.count("\n")
    print(f"plan {plan.version} for {plan.model} approved by {args.by}: in force now "
          f"({lines} diff lines in the audit trail)")  # fmt: skip
    return 0


def _budget(settings: Settings):  # -> Budget
    from monitor.plan.document import Budget

    return Budget(incidents=settings.budget_incidents, days=settings.budget_days)

"""`radwatch plan show|validate|diff|approve|check|render`: the monitoring plan radwatch runs.

The edge of monitor/plan/: the plan file is validated and diffed here without touching the
database; `approve` puts it in force (audited with its diff); `show` prints the plan in force
and what its false-alarm budget derives; `check` and `render` say what it can and cannot see.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monitor.commands.arguments import out_file, positive_float
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
    check = actions.add_parser("check", help="the smallest shift each signal and stratum can "
                               "show in time, and the strata too small to watch")  # fmt: skip
    check.add_argument("--model", required=True)
    check.add_argument("--within-days", type=positive_float, default=7.0,
                       help="the stated time to detect within (default 7 days)")  # fmt: skip
    check.add_argument("--seed", type=int, default=0, help="of the resampling (default 0)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_check)
    render = actions.add_parser("render", help="the plan in force as an HTML or PDF document")
    render.add_argument("--model", required=True)
    render.add_argument("--out", required=True, type=document_file, metavar="FILE.html|FILE.pdf")
    render.set_defaults(handler=_render)


def document_file(text: str) -> Path:
    """--out of `plan render`: a writable .html or .pdf file, checked before any work."""
    path = out_file(text)
    if path.suffix.lower() not in (".html", ".htm", ".pdf"):
        raise argparse.ArgumentTypeError(f"{text}: give a file ending in .html or .pdf")
    return path


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
    from monitor.plan.document import read_file

    plan = read_file(args.file)
    print(f"{args.file}: a valid plan, version {plan.version}, for model {plan.model} "
          f"({len(plan.clauses())} clauses, {len(plan.stop_rules)} stop rules)")  # fmt: skip
    return 0


def _diff(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.plan import store
    from monitor.plan.document import diff, read_file

    plan = read_file(args.file, model=args.model)
    with _conn(settings) as conn:
        current = store.in_force(conn, args.model, budget=_budget(settings))
    change = diff(current.plan, plan)
    print(change or f"{args.file} says what the plan in force ({current.plan.version}) says")
    return 0


def _approve(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.plan import store
    from monitor.plan.document import read_file

    plan = read_file(args.file, model=args.model)  # a PlanError is one line, exit 2
    with _conn(settings, write=True) as conn:
        change = store.approve(conn, plan, by=args.by, note=args.note)
    lines = change.count("\n")
    print(f"plan {plan.version} for {plan.model} approved by {args.by}: in force now "
          f"({lines} diff lines in the audit trail)")  # fmt: skip
    return 0


def _render(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.reports import plan_document
    from monitor.reports.printing import PrintError

    with _conn(settings) as conn:
        doc = plan_document.load(conn, args.model, settings)
    try:
        print(plan_document.write(doc, args.out))
    except PrintError as exc:  # not .html/.pdf, or no Chromium
        raise UsageError(str(exc)) from exc
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.plan import store
    from monitor.plan.check import detectability

    with _conn(settings) as conn:
        plan = store.in_force(conn, args.model, budget=_budget(settings)).plan
        found = detectability(conn, args.model, plan, within_days=args.within_days,
                              seed=args.seed)  # fmt: skip
    if args.json:
        print(json.dumps(found.as_dict(), indent=2, default=str))
    else:
        print("\n".join(found.lines()))
    return 0


def _budget(settings: Settings):  # -> Budget
    from monitor.plan.document import Budget

    return Budget(incidents=settings.budget_incidents, days=settings.budget_days)

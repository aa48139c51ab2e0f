"""`radwatch compliance-report`: the post-market surveillance report for one model, as HTML."""

from __future__ import annotations

import argparse
import json

from monitor.commands.arguments import out_file
from monitor.config import Settings
from monitor.store import db


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compliance-report",
        help="HTML report for governance: versions, references, alerts, performance, audit",
        description="Example: radwatch compliance-report --model cxr-nodule "
        "--period 2026-11-01/2026-11-30 --out report.html (UTC when no offset; a bare end "
        "date is inclusive)",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--period", required=True, metavar="FROM/TO",
                        help="ISO 8601 dates or date-times, FROM inclusive")  # fmt: skip
    parser.add_argument("--out", type=out_file, required=True, metavar="FILE.html",
                        help="the file to write; its folder must exist")  # fmt: skip
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.audit.export import parse_time
    from monitor.audit.trail import AuditError
    from monitor.audit.verify import verify_configured
    from monitor.commands.audit_cmd import database_url
    from monitor.errors import UsageError
    from monitor.reports.compliance import build_sections, render

    since_text, sep, until_text = args.period.partition("/")
    if not sep or not since_text or not until_text:
        raise UsageError("--period must be FROM/TO, e.g. 2026-11-01/2026-11-30")
    try:
        start, end = parse_time(since_text), parse_time(until_text, end=True)
        if start >= end:
            raise UsageError("--period: FROM must be before TO")
        url = database_url(settings)
        with db.connect(url) as conn:
            verification = verify_configured(conn, settings)
    except AuditError as exc:
        raise UsageError(str(exc)) from exc
    with db.connect(url) as conn:
        sections = build_sections(conn, args.model, start, end)
    args.out.write_text(render(sections, verification, model=args.model, start=start, end=end),
                        encoding="utf-8")  # fmt: skip
    print(json.dumps({"out": str(args.out), "model": args.model, "audit_ok": verification.ok,
                      "sections": len(sections)}))  # fmt: skip
    return 0

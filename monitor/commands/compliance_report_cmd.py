"""`radwatch compliance-report`: the post-market surveillance report for one model and period,
as HTML or (by the file name) an A4 PDF printed by headless Chromium."""

from __future__ import annotations

import argparse
import json

from monitor.commands.plan_cmd import document_file
from monitor.config import Settings
from monitor.store import db


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compliance-report",
        help="the post-market surveillance report (HTML or PDF) for governance and regulators",
        description="Example: radwatch compliance-report --model cxr-nodule "
        "--period 2026-11-01/2026-11-30 --out report.pdf (UTC when no offset; a bare end "
        "date is inclusive)",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--period", required=True, metavar="FROM/TO",
                        help="ISO 8601 dates or date-times, FROM inclusive")  # fmt: skip
    parser.add_argument("--out", type=document_file, required=True, metavar="FILE.html|FILE.pdf",
                        help="the file to write, HTML or PDF by its extension; its folder must "
                             "exist")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.set_defaults(handler=_report)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.audit.export import parse_time
    from monitor.audit.trail import AuditError
    from monitor.audit.verify import verify_configured
    from monitor.commands.audit_cmd import database_url
    from monitor.errors import UsageError
    from monitor.reports import compliance
    from monitor.reports.printing import PrintError

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
        data = compliance.load(conn, args.model, start, end, verification)
    try:
        line = compliance.write(data, args.out)
    except PrintError as exc:  # no Chromium, or it failed
        raise UsageError(str(exc)) from exc
    if args.json:
        v = verification
        print(json.dumps({"out": str(args.out), "model": args.model,
                          "incidents": len(data.incidents), "alerts": len(data.alerts),
                          "audit_ok": v.ok, "audit_rows": v.rows,
                          "rows_checkpointed": min(v.checkpointed_through, v.rows)}))  # fmt: skip
    else:
        print(line)
    return 0

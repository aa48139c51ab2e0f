"""`radwatch report --model NAME [--from T --to T] --out FILE.html`: the model's monitoring report."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from monitor.commands.arguments import out_file
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write a model's monitoring report (HTML): verdict, incidents, plots, subgroups",
        description="One self-contained HTML file: a verdict paragraph, one card per incident "
        "(or alert) with its significant evidence, examples, recommended action and history, "
        "event-time plots with the reference shaded and thresholds drawn, performance per "
        "window with intervals, the subgroup table with outliers marked, and Evidently's "
        "column-by-column drift and classification report. --from/--to (event time) apply to "
        "every section. Example: radwatch report --model cxr-nodule "
        "--from 2026-11-01 --to 2026-12-01 --out report.html",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--from", dest="start", type=iso_time, metavar="T",
                        help="ISO 8601 date or date-time (UTC when no offset)")  # fmt: skip
    parser.add_argument("--to", dest="end", type=iso_time, metavar="T",
                        help="end of the period (exclusive), same form as --from")  # fmt: skip
    parser.add_argument("--out", type=out_file, required=True, metavar="FILE.html",
                        help="the file to write; its folder must exist")  # fmt: skip
    parser.add_argument("--no-evidently", action="store_true",
                        help="only radwatch's own sections (faster)")  # fmt: skip
    parser.set_defaults(handler=_report)


def iso_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or date-time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.reports.model_report import ReportError
    from monitor.reports.writing import write_report
    from monitor.services.runtime import resolve_endpoints

    if args.start and args.end and args.start >= args.end:
        raise UsageError("--from must be before --to")
    endpoints = resolve_endpoints(settings, read_only=True, broker=False)
    try:
        path = write_report(endpoints.database_url, settings, args.model, args.out,
                            start=args.start, end=args.end,
                            include_evidently=not args.no_evidently)  # fmt: skip
    except ReportError as exc:
        raise UsageError(str(exc)) from exc
    print(f"report: {path}")
    return 0

"""`radwatch report --model NAME [--from T --to T] --out FILE.html`: drift and performance report."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from monitor.commands.arguments import out_file
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write an HTML drift and performance report for a model",
        description="Timeline, alerts, most atypical images, subgroup table and an Evidently "
        "report in one HTML file. Example: radwatch report --model cxr-nodule "
        "--from 2026-11-01 --to 2026-12-01 --out report.html",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--from", dest="start", type=iso_time, metavar="T",
                        help="ISO 8601 date or date-time (UTC when no offset)")  # fmt: skip
    parser.add_argument("--to", dest="end", type=iso_time, metavar="T")
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


def write_report(database_url: str, settings: Settings, model: str, out: Path, *,
                 start: datetime | None = None, end: datetime | None = None,
                 include_evidently: bool = True) -> Path:  # fmt: skip
    """Render the report to `out` (also used by `radwatch demo`)."""
    from monitor.reports import model_report

    data = model_report.load(database_url, model, start, end)
    from monitor.ingest.image_stage import image_fetcher

    document = model_report.render(data, pseudonym_key=settings.key_bytes(),
                             include_evidently=include_evidently, images=image_fetcher(settings))  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document, encoding="utf-8")
    return out


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.reports.model_report import ReportError
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


def demo_step(settings: Settings, database_url: str, out_dir: Path) -> None:
    """`radwatch demo`'s report step: write DIR/report.html and say where metrics are.

    The demo is non-interactive, so /metrics is not served here; the lines printed say how
    to serve it over the demo's database.
    """
    from monitor.config import mask_secrets  # the password stays in its file, off the screen
    from monitor.reports.model_report import ReportError
    from monitor.store import db

    with db.connect(database_url) as conn:
        models = [r[0] for r in conn.execute(
            "SELECT model_name FROM inferences GROUP BY model_name ORDER BY count(*) DESC"
        ).fetchall()]  # fmt: skip
    for i, model in enumerate(models):
        out = out_dir / ("report.html" if i == 0 else f"report-{model}.html")
        try:
            write_report(database_url, settings, model, out)
            print(f"report: {out}")
        except ReportError as exc:
            print(f"report: not written for {model} ({exc})")
    print(
        f"metrics: RADWATCH_DATABASE_URL={mask_secrets(database_url)} radwatch metrics "
        f"→ http://{settings.metrics_addr}/metrics (radwatch run serves it while collecting)"
    )

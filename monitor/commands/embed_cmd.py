"""`radwatch embed`: backfill embeddings and image features for a model's stored events.

The command edge of monitor/ingest/backfill.py. `radwatch embed --parked` is how studies
parked during a PACS outage are fetched again (the ingest worker stored their events and
queued their images): each is read through the fenced image fetcher (RADWATCH_IMAGE_ROOTS,
RADWATCH_DICOMWEB_URLS, the DICOMweb auth settings), embedded and taken off the queue; an
image the PACS still cannot serve stays queued. Run it from cron or after an outage.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime

from monitor.commands.output import add_json_flag, emit, key_values
from monitor.commands.progress import tracked
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "embed",
        help="backfill embeddings and image features for stored events",
        description="Example: radwatch embed --model cxr-nodule --since 2026-11-01 "
        "--until 2026-12-01 --embedder default; or radwatch embed --parked (images parked "
        "while the PACS was unavailable)",
    )
    parser.add_argument("--model", help="model name, as events carry it")
    parser.add_argument("--since", type=_when, help="ISO 8601 date or time (UTC)")
    parser.add_argument("--until", type=_when, help="exclusive end, ISO 8601")
    parser.add_argument("--parked", action="store_true",
                        help="fetch the images parked in image_fetch_queue (of --model, or all)")  # fmt: skip
    parser.add_argument("--embedder", default="default",
                        help="'default' or an embedder named in the config file")  # fmt: skip
    parser.add_argument("--batch-size", type=int, help="images per forward pass (device default)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="DICOM decoding processes (0: decode in this process)")  # fmt: skip
    add_json_flag(parser)
    parser.set_defaults(handler=_embed)


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 date or time") from exc
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _embed(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.ingest.backfill import run_backfill
    from monitor.services.runtime import resolve_endpoints

    if args.parked:
        if args.since is not None or args.until is not None:
            raise UsageError("--parked takes no --since/--until (it retries the whole queue)")
    elif args.model is None or args.since is None or args.until is None:
        raise UsageError("--model, --since and --until are required (or use --parked)")
    elif args.until <= args.since:
        raise UsageError("--until must be after --since")
    if args.batch_size is not None and args.batch_size <= 0 or args.workers < 0:
        raise UsageError("--batch-size must be positive and --workers not negative")
    endpoints = resolve_endpoints(settings)
    # On a terminal the backfill draws its own bar (it knows the total); elsewhere the
    # periodic log line counts the images embedded so far.
    tty = sys.stderr.isatty()
    with contextlib.ExitStack() as stack:
        on_batch = None if tty else stack.enter_context(tracked("embed", unit="images")).update
        result = run_backfill(
            settings, endpoints.database_url, embedder=args.embedder, model=args.model,
            since=args.since, until=args.until, parked=args.parked, workers=args.workers,
            batch_size=args.batch_size, progress=tty, on_batch=on_batch,
        )  # fmt: skip
    emit(result.as_dict(), args.json, lambda d: key_values(d.items(), title="embedded"))
    return 0 if result.failed == 0 else 1

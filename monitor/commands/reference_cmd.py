"""`radwatch reference build --model NAME (--from T --to T | --first N)`: freeze a reference.

The command edge of monitor/drift/reference.py: selects the validated events, fits and calibrates
the drift detectors on them, and stores everything (with an audit record).
`radwatch reference migrate-pickles [--model M]` converts references pickled by older
releases into data artifacts, once, run by an operator (monitor/drift/reference_migration.py).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from monitor.commands.arguments import positive_float, positive_int
from monitor.commands.output import add_json_flag
from monitor.commands.progress import tracked
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "reference", help="build a frozen drift reference and fit its detectors",
        description="Example: radwatch reference build --model cxr-nodule --first 1000",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="freeze a reference and fit detectors on it")
    build.add_argument("--model", required=True)
    build.add_argument("--first", type=positive_int, metavar="N",
                       help="the model's first N events")  # fmt: skip
    build.add_argument("--from", dest="start", metavar="T", help="period start (ISO 8601)")
    build.add_argument("--to", dest="end", metavar="T", help="period end (ISO 8601)")
    build.add_argument("--window", type=positive_int, default=200,
                       help="events per detection window (also the calibration sub-window)")  # fmt: skip
    build.add_argument("--alpha", type=positive_float, default=0.05,
                       help="false-alarm level of each window after BH correction")  # fmt: skip
    build.add_argument("--correction", choices=("bh", "bonferroni"), default="bh")
    build.add_argument("--min-window", type=positive_int, default=30,
                       help="per stratum: fewer events in a window → insufficient_data")  # fmt: skip
    build.add_argument("--online", action="store_true",
                       help="also fit the online detector (off by default: see README, "
                            "'The false-alarm budget')")  # fmt: skip
    build.add_argument("--online-ert", type=positive_int, default=None,
                       help="its expected run time (studies between false alarms); default: "
                            "the false-alarm budget's at the model's observed volume")  # fmt: skip
    build.add_argument("--online-bootstraps", type=positive_int, default=5000)
    build.add_argument("--no-online", action="store_true",
                       help="no online detector (the default; kept for older scripts)")  # fmt: skip
    build.add_argument("--calibration-windows", type=positive_int, default=20)
    add_json_flag(build)
    build.set_defaults(handler=_build)  # fmt: skip
    migrate = actions.add_parser(
        "migrate-pickles", help="convert pickled references (older releases) into data, once",
        description="Example: radwatch reference migrate-pickles --model cxr-nodule",
    )  # fmt: skip
    migrate.add_argument("--model", help="only this model's references (default: all)")
    add_json_flag(migrate)
    migrate.set_defaults(handler=_migrate_pickles)


def parse_time(text: str) -> datetime:
    from monitor.errors import UsageError

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"not an ISO 8601 date or date-time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    if args.first is None and not (args.start and args.end):
        raise UsageError("give --first N or both --from and --to")
    if args.first is not None and (args.start or args.end):
        raise UsageError("--first and --from/--to are exclusive")
    if not args.alpha < 1:
        raise UsageError("--alpha must be between 0 and 1")
    period = (parse_time(args.start), parse_time(args.end)) if args.start else None
    # A one-shot writer: it may start the embedded PostgreSQL and migrate, but it does not
    # wait for a server that is absent (one line, exit 2). Reached before the detectors are
    # imported: alibi-detect and torch take seconds to load, an answer must not.
    url = resolve_endpoints(settings, broker=False, retry=False).database_url
    from detectors.drift.suite import SuiteConfig
    from monitor.alerts import budget
    from monitor.drift import reference

    if args.online and args.no_online:
        raise UsageError("--online and --no-online are exclusive")
    with db.connect(url) as conn:
        ert = args.online_ert
        if args.online and ert is None:
            ert = budget.online_ert(conn, args.model, settings.false_alarm_budget(),
                                    drift_window=args.window)  # fmt: skip
        config = SuiteConfig(
            alpha=args.alpha, correction=args.correction, min_window=args.min_window,
            calibration_window=args.window, calibration_windows=args.calibration_windows,
            online_ert=ert or SuiteConfig.online_ert, online_bootstraps=args.online_bootstraps,
            online=args.online,
        )  # fmt: skip
        try:
            # Fitting and calibrating takes tens of seconds and does not count: the clock.
            with tracked(f"reference build {args.model}"):
                info = reference.build(conn, model=args.model, first=args.first,
                                       period=period, config=config, actor=settings.actor)  # fmt: skip
        except reference.ReferenceError as exc:
            raise UsageError(str(exc)) from exc
    doc = {"reference_id": info.id, "model": info.model, "n_events": info.n_events,
           "content_hash": info.content_hash, "detector_fingerprint": info.detector_fingerprint,
           "embedder_fingerprint": info.embedder_fingerprint,
           "strata_counts": info.strata_counts, "calibration": info.calibration}  # fmt: skip
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(
            f"reference {info.id} for {info.model}: {info.n_events} events, "
            f"sha256 {info.content_hash[:16]}…, detectors {info.detector_fingerprint}"
        )
        for name, rate in sorted(info.calibration.get("false_alarm", {}).items()):
            print(f"  {name}: empirical false-alarm rate {rate:.3f} on "
                  f"{info.calibration.get('windows')} held-out sub-windows")  # fmt: skip
    return 0


def _migrate_pickles(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.errors import UsageError
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    url = resolve_endpoints(settings, broker=False, retry=False).database_url
    from monitor.drift import reference, reference_migration

    with db.connect(url) as conn:
        try:
            done = reference_migration.migrate_pickles(conn, model=args.model,
                                                       actor=settings.actor)  # fmt: skip
        except reference.ReferenceError as exc:
            raise UsageError(str(exc)) from exc
    if args.json:
        print(json.dumps([c.__dict__ for c in done], indent=2))
    elif not done:
        print("no pickled reference to convert")
    for c in [] if args.json else done:
        print(f"reference {c.reference_id} ({c.model}): pickle {c.old_sha256[:16]}… → "
              f"artifact {c.new_sha256[:16]}…")  # fmt: skip
    return 0

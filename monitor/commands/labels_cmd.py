"""`radwatch labels derive`: report text → per-finding labels, file to file, so that a site
can check the labeler on its own reports before trusting it.

The command edge of collectors/labeler (issue 17); the work is collectors.labeler.batch.
Each input line {"id": ..., "text": ...}; each output line {"id": ..., "labels": {finding:
1|0|-1}, "labeler": {"name", "version", "fingerprint"}} (absent: not mentioned). A bad
line is one line on stderr naming its number, never its text (DESIGN.md §5); the others go
on and the exit status is 1. A missing input file or a bad --lexicon is exit 2. `labels`
is a group: `import` (FHIR) and `review` join `derive` as more actions of it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.commands.arguments import out_file, positive_int
from monitor.commands.output import add_json_flag, emit, key_values
from monitor.config import Settings
from monitor.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "labels", help="labels derived from report text: derive, import, review",
        description="Example: radwatch labels derive --in reports.ndjson --out labels.ndjson "
        "--findings nodule,pneumothorax",
    )  # fmt: skip
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    derive = actions.add_parser(
        "derive", help="label report texts from an NDJSON file into another",
        description='Each input line {"id": ..., "text": ...}; each output line {"id": ..., '
        '"labels": {finding: 1|0|-1}, "labeler": {...}} (absent: not mentioned).',
    )  # fmt: skip
    derive.add_argument("--in", dest="in_path", required=True, type=Path, metavar="FILE.ndjson")
    derive.add_argument("--out", dest="out_path", required=True, type=out_file,
                        metavar="FILE.ndjson")  # fmt: skip
    derive.add_argument("--findings", type=finding_list, metavar="a,b,...",
                        help="only these findings (default: all the lexicon's)")  # fmt: skip
    derive.add_argument("--lexicon", type=Path, metavar="FILE.toml|FILE.json",
                        help="labeler configuration: terms, exclusions, score map")  # fmt: skip
    derive.add_argument("--model", help="use the [models.MODEL] table of --lexicon")
    derive.add_argument("--evidence", action="store_true",
                        help="add each label's sentence offsets and SHA-256 to the output")  # fmt: skip
    add_json_flag(derive)
    derive.set_defaults(handler=run_derive)
    _register_review(actions)
    imports = actions.add_parser(
        "import", help="labels from FHIR R4 DiagnosticReports (NDJSON), published by accession",
        description="Example: radwatch labels import --fhir reports.ndjson --model "
        "cxr-nodule=nodule. Final reports label, corrected ones correct, preliminary ones "
        "are counted only; a report that cannot be used is dead-lettered (exit 1).",
    )  # fmt: skip
    imports.add_argument("--fhir", required=True, type=Path, metavar="FILE.ndjson")
    imports.add_argument("--model", action="append", metavar="MODEL[=FINDING,...]",
                         help="a model the labels are for (repeatable; default: "
                         "RADWATCH_REPORT_MODELS)")  # fmt: skip
    add_json_flag(imports)
    imports.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    """The `labels import` handler: exit 0, or 1 when some reports were dead-lettered."""
    from monitor.ingest.fhir_import import import_fhir
    from monitor.ingest.report_labels import report_models

    summary = import_fhir(args.fhir, settings, report_models(settings, args.model))
    emit(summary.as_dict(), args.json,
         lambda d: key_values(list(d.items()), title=f"labels imported from {args.fhir}"))  # fmt: skip
    return 1 if summary.dead_lettered else 0


def run_derive(args: argparse.Namespace, settings: Settings | None = None) -> int:
    """The `labels derive` handler: exit 0, or 1 when some lines were bad."""
    from collectors.labeler import LabelerError, default_labeler, load_labeler_config
    from collectors.labeler.batch import derive_lines

    if args.model is not None and args.lexicon is None:
        raise UsageError("--model needs --lexicon (it picks a [models.MODEL] table)")
    try:
        labeler = (default_labeler() if args.lexicon is None
                   else load_labeler_config(args.lexicon, args.model).labeler())  # fmt: skip
    except LabelerError as exc:
        raise UsageError(str(exc).splitlines()[0]) from exc
    unknown = sorted(set(args.findings or ()) - set(labeler.findings))
    if unknown:
        raise UsageError(f"--findings not in the lexicon: {', '.join(unknown)}")
    try:
        source = args.in_path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {args.in_path}: {exc.strerror}") from exc
    with source, args.out_path.open("w", encoding="utf-8") as sink:
        summary = derive_lines(
            source, sink, labeler, args.findings, evidence=args.evidence,
            on_bad=lambda bad: print(f"radwatch: labels derive: {bad}", file=sys.stderr),
        )  # fmt: skip
    emit(summary.as_dict(), args.json,
         lambda d: key_values([(k, v) for k, v in d.items() if k != "labeler"],
                              title=f"labels derived into {args.out_path}"))  # fmt: skip
    return 0 if not summary.bad else 1


def _register_review(actions: argparse._SubParsersAction) -> None:
    review = actions.add_parser(
        "review", help="confirm or correct a share of the labels derived from reports",
        description="Example: radwatch labels review --reviewer dr.lee --limit 20. Answers "
        "from stdin: a (agree), d FINDING=0|1 ... (disagree, the right values), s (skip), q.",
    )  # fmt: skip
    review.add_argument("--reviewer", required=True, type=someone,
                        help="who reviews (stored with each answer and audited)")  # fmt: skip
    review.add_argument("--model", help="only this model's labels")
    review.add_argument("--limit", type=positive_int, help="at most N items this session")
    add_json_flag(review)
    review.set_defaults(handler=run_review)


def run_review(args: argparse.Namespace, settings: Settings) -> int:
    """The `labels review` handler: the terminal flow of monitor.labelwatch.review."""
    from monitor.labelwatch import review
    from monitor.services.runtime import resolve_endpoints
    from monitor.store import db

    # The existing database, as it is (no embedded service started, no migration run).
    url = resolve_endpoints(settings, read_only=True, broker=False).database_url
    # With --json the items and prompts go to stderr, so stdout is the summary alone.
    ask, say = review.console(sys.stderr if args.json else sys.stdout)
    with db.connect(url) as conn:
        summary = review.session(
            conn, key=settings.key_bytes(), share=settings.label_review_share,
            reviewer=args.reviewer, model=args.model, limit=args.limit, ask=ask, say=say,
        )  # fmt: skip
    emit(summary.as_dict(), args.json,
         lambda d: key_values(list(d.items()), title="labels review"))  # fmt: skip
    return 0


def someone(text: str) -> str:
    """A non-blank `--reviewer`: every answer names who gave it."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name who reviews, not be empty")
    return text.strip()


def finding_list(text: str) -> tuple[str, ...]:
    """--findings a,b,...: names, in order, without repeats."""
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not names:
        raise argparse.ArgumentTypeError("give finding names separated by commas")
    return names
